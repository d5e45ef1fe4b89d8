"""`harness run`'s options (RunOptions) without the campaign machinery, so `harness run --help`
starts without importing trio, paramiko or the store (harness/run.py re-exports all of it).

The option defaults that other modules own are spelled here as literals: importing those
modules costs most of a second (tests/unit/test_cli_startup.py holds both sides equal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nemesis.grudge import SHAPES
from node.faults import TEST_ONLY, FaultSwitches

# nemesis/faults.py's TARGET_SPECS.
TARGET_SPECS = ("one", "minority", "majority", "all")
# nemesis/storage.py's CORRUPT_MODES and DISKS.
CORRUPT_MODES = ("stopped", "live")
DISKS = ("commitlog", "data")
# harness/workloads' WORKLOADS and harness/deploy's DEPLOYS.
WORKLOADS = ("register", "set", "lww-rmw", "row", "batch", "ttl")
DEPLOYS = ("local", "ssh", "vagrant")
# The workloads that retire a key after --ops-per-key operations (KeyRotation); the others keep
# their keys (set: each key's set grows; lww-rmw: every key all run long).
KEY_ROTATING_WORKLOADS = ("register", "row", "batch")
DEFAULT_OPS_PER_KEY = 300
# The register workload's orders of each key's unique values (harness/workloads/register.py).
VALUE_ORDERS = ("increasing", "random")
# harness/datapaths.py's DEFAULT_MEMTABLE_FLUSH_KB and DEFAULT_GC_GRACE_S.
DEFAULT_MEMTABLE_FLUSH_KB = 4
DEFAULT_GC_GRACE_S = 10

# Nodes of a local campaign unless --nodes says otherwise: a replication factor of 3 with room
# for a minority to fail, and what 2 cores carry comfortably.
DEFAULT_NODES = 5
# Validation fault switches a campaign may turn on: the node's own list (node/faults.py documents
# each) without its test-only hooks, which no checker can catch.
VALIDATION_FAULTS = tuple(f.name for f in dataclasses.fields(FaultSwitches) if f.name not in TEST_ONLY)


def _choices(text: str, allowed: Sequence[str], flag: str, every: str | None = None) -> list[str]:
    """A comma list of names from ``allowed`` (``every``, if given, stands for all of them);
    ValueError names ``flag``."""
    if every is not None and text == every:
        return list(allowed)
    names = [s.strip() for s in text.split(",") if s.strip()]
    also = f" or {every}" if every else ""
    if not names:
        raise ValueError(f"{flag} needs at least one of {', '.join(allowed)}{also}")
    for s in names:
        if s not in allowed:
            raise ValueError(f"{flag} must be a comma list of {', '.join(allowed)}{also}, got {s!r}")
    return names


@dataclass
class RunOptions:
    """Every parameter of a campaign (recorded in test.json)."""

    workload: str = "register"
    nemesis: str = "partition"
    # Seconds between fault changes; None fits WINDOWS_PER_NEMESIS windows of each nemesis into
    # the time limit (nemesis/faults.py Schedule).
    nemesis_interval: float | None = None
    partition: str = "all"
    targets: str = ",".join(TARGET_SPECS)
    # What the corrupt nemesis damages (a stopped node's files, a running node's SSTable records)
    # and which disk the disk nemesis fails (the commit log's, the data directory's), drawn per step.
    corrupt_modes: str = ",".join(CORRUPT_MODES)
    disks: str = ",".join(DISKS)
    time_limit: float = 60.0
    concurrency: str = "2n"
    rate: float = 200.0
    # A node count, or (ssh) a host list; None: DEFAULT_NODES locally, every host for ssh/vagrant.
    nodes: int | str | None = None
    replication_factor: int = 3
    # Datacenters and racks per datacenter (harness/topology.py): more than one of either places
    # the nodes and makes the keyspace NetworkTopologyStrategy, replication_factor per datacenter.
    datacenters: int = 1
    racks: int = 1
    read_cl: str = "QUORUM"
    write_cl: str = "QUORUM"
    key_count: int = 5
    # Register, row and batch: operations before a key is retired; None: DEFAULT_OPS_PER_KEY.
    ops_per_key: int | None = None
    # The share of writes that are deletes (register, row, batch); None: the workload's own default.
    delete_fraction: float | None = None
    # Register workload: each key's unique values in increasing or random order (WorkloadSettings).
    value_order: str = "increasing"
    # Register workload: client-supplied write timestamps from a coarse clock (WorkloadSettings).
    client_timestamps: bool = False
    seed: int | None = None
    test_count: int = 1
    leave_db_running: bool = False
    store: str = "store"
    toxiproxy: str | None = None
    junit_xml: str | None = None
    recovery_time: float = 5.0
    commitlog_sync: str = "periodic"
    # The nodes' [storage] commit_failure_policy (Cassandra's): what a node does after a failed
    # commit log write or fsync, which the disk nemesis's EIO windows cause (harness/datapaths.py).
    commit_failure_policy: str = "stop"
    # Campaign storage settings (harness/datapaths.py): 0 KB = the store's own 64 MB.
    memtable_flush_kb: int = DEFAULT_MEMTABLE_FLUSH_KB
    gc_grace: int = DEFAULT_GC_GRACE_S
    # The nodes' [hints] max_hint_window in seconds (harness sim only); None: the store's 3 hours.
    max_hint_window: float | None = None
    # The nodes' [membership] file_stream_min_bytes (harness/datapaths.py); None: the store's 1 MiB.
    file_stream_min_bytes: int | None = None
    # The paper's load balancing on, comparing loads every this many seconds (mean); None: off.
    load_balance: float | None = None
    read_repair: str = "BLOCKING"
    # After the final reads: drain the hints, run an anti-entropy repair on every node in turn,
    # then take the `after` snapshot, whose replicas must then agree (harness/convergence.py).
    final_repair: bool = False
    # At the very end, every node killed and restarted and read again: what the after pass read
    # must come back from each node's files (harness/restart_pass.py, checkers/restart.py).
    no_restart_check: bool = False
    validation_faults: list[str] = field(default_factory=list)
    test_name: str | None = None
    checker_time_limit: float = 60.0
    # Where the cluster runs, and the SSH settings for ssh/vagrant deploys.
    deploy: str = "local"
    nodes_file: str | None = None
    username: str | None = None
    ssh_private_key: str | None = None
    password: str | None = None
    strict_host_key_checking: bool = False
    known_hosts: str | None = None
    remote_root: str = "/opt/ringlab"
    clock_mode: str = "host"
    # The API port of a Toxiproxy server on every host, for latency (vagrant: 8474, the VMs' own).
    host_toxiproxy: int | None = None
    # Who assigns a joining node's tokens: gossip (the node itself) or the paper's ZooKeeper leader.
    coordination: str = "gossip"
    zk_servers: int = 1
    # Measure the node processes with coverage.py (harness/campaign_coverage.py).
    coverage: bool = False

    def node_count(self) -> int | None:
        """How many nodes start: ``--nodes`` as a count (locally DEFAULT_NODES when not given),
        every host of a host list, or None for every host of a nodes file or of the Vagrant VMs
        (known once they are read). Hosts beyond the count are spares (membership nemesis)."""
        if isinstance(self.nodes, int):
            return self.nodes
        if isinstance(self.nodes, str):
            return len([h for h in self.nodes.split(",") if h.strip()])
        return DEFAULT_NODES if self.deploy in ("local", "sim") else None

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        from harness import datapaths
        from harness.generator import parse_concurrency
        from harness.workloads import validate_delete_fraction
        from nemesis import faults
        from node.protocol import CONSISTENCY_LEVELS

        if self.workload not in WORKLOADS:
            raise ValueError(f"--workload must be one of {', '.join(WORKLOADS)}, got {self.workload!r}")
        validate_delete_fraction(self.workload, self.delete_fraction)
        if self.value_order not in VALUE_ORDERS:
            raise ValueError(f"--value-order must be one of {', '.join(VALUE_ORDERS)}, got {self.value_order!r}")
        if self.value_order != "increasing" and self.workload != "register":
            raise ValueError(f"--value-order applies to the register workload, not {self.workload!r}")
        if self.ops_per_key is not None:
            if self.workload not in KEY_ROTATING_WORKLOADS:
                raise ValueError(f"--ops-per-key applies to the {', '.join(KEY_ROTATING_WORKLOADS)} workloads, "
                                 f"not {self.workload!r}")
            if self.ops_per_key < 1:
                raise ValueError(f"--ops-per-key must be at least 1, got {self.ops_per_key}")
        if self.recovery_time < 0:
            raise ValueError(f"--recovery-time must be >= 0 seconds, got {self.recovery_time}")
        if self.client_timestamps and self.workload != "register":
            raise ValueError(f"--client-timestamps needs --workload register, got {self.workload!r}")
        faults.parse_nemeses(self.nemesis)
        self.partition_shapes()
        self.target_specs()
        self.storage_choices()
        if self.nemesis_interval is not None and self.nemesis_interval <= 0:
            raise ValueError(f"--nemesis-interval must be positive, got {self.nemesis_interval}")
        if self.time_limit <= 0:
            raise ValueError(f"--time-limit must be positive, got {self.time_limit}")
        # "sim" is harness sim's own deployment (harness/deploy/sim.py), not a --deploy choice.
        if self.deploy not in DEPLOYS and self.deploy != "sim":
            raise ValueError(f"--deploy must be one of {', '.join(DEPLOYS)}, got {self.deploy!r}")
        if self.deploy == "local" and isinstance(self.nodes, str):
            raise ValueError(f"--nodes must be a node count for local runs, got {self.nodes!r} (host lists need --deploy ssh)")
        if self.host_toxiproxy is not None and self.deploy not in ("ssh", "vagrant"):
            raise ValueError(f"--host-toxiproxy is for --deploy ssh|vagrant (a Toxiproxy server on every host); "
                             f"--deploy {self.deploy} has its own fault proxy (--toxiproxy URL for an external one)")
        if self.deploy == "ssh" and not self.nodes_file and not isinstance(self.nodes, str):
            raise ValueError("--deploy ssh needs --nodes-file FILE or --nodes host1,host2,...")
        count = self.node_count()
        if self.deploy == "local" and self.toxiproxy is None and count is not None and count > 50:
            raise ValueError(f"--nodes {self.nodes} is more than a local cluster on one machine can carry (50)")
        if self.deploy == "ssh" and self.nodes_file:
            if isinstance(self.nodes, str):
                raise ValueError("give --nodes-file or a --nodes host list, not both (with a nodes file, "
                                 "--nodes N starts N of its hosts and keeps the others spare)")
            from harness.deploy.ssh import hosts_from_args

            hosts = len(hosts_from_args(self))
            if count is not None and count > hosts:
                raise ValueError(f"--nodes {count} is more than the {hosts} hosts of --nodes-file {self.nodes_file}")
            count = hosts if count is None else count
        if count is not None and count < 1:
            raise ValueError(f"--nodes must be at least 1, got {self.nodes}")
        from harness import topology

        topology.validate(self, count)
        if count is not None and not 1 <= self.replication_factor <= count:
            raise ValueError(f"--replication-factor must be between 1 and the node count ({count}), got {self.replication_factor}")
        for flag, cl in (("--read-cl", self.read_cl), ("--write-cl", self.write_cl)):
            if cl not in CONSISTENCY_LEVELS:
                raise ValueError(f"{flag} must be one of {', '.join(CONSISTENCY_LEVELS)}, got {cl!r}")
        if self.read_cl == "ANY":
            raise ValueError("--read-cl ANY: ANY is a write-only consistency level (the store refuses every read "
                             "at ANY, as Cassandra does); ONE is the weakest read level")
        parse_concurrency(self.concurrency, count or 1)
        if self.rate is not None and self.rate < 0:
            raise ValueError(f"--rate must be >= 0 (0 = unthrottled), got {self.rate}")
        if self.key_count < 1:
            raise ValueError(f"--key-count must be at least 1, got {self.key_count}")
        if self.test_count < 1:
            raise ValueError(f"--test-count must be at least 1, got {self.test_count}")
        if self.commitlog_sync not in ("periodic", "batch", "group"):
            raise ValueError(f"--commitlog-sync must be periodic, batch or group, got {self.commitlog_sync!r}")
        if self.commit_failure_policy not in ("stop", "die", "ignore"):
            raise ValueError(f"--commit-failure-policy must be stop, die or ignore, got {self.commit_failure_policy!r}")
        datapaths.validate(self)
        if self.read_repair not in ("BLOCKING", "NONE"):
            raise ValueError(f"--read-repair must be BLOCKING or NONE, got {self.read_repair!r}")
        for f in self.validation_faults:
            if f not in VALIDATION_FAULTS:
                raise ValueError(f"--fault must be one of {', '.join(VALIDATION_FAULTS)}, got {f!r}")
        self._validate_coordination()

    def _validate_coordination(self) -> None:
        from nemesis import faults
        from node.coordination import MODES

        if self.coordination not in MODES:
            raise ValueError(f"--coordination must be one of {', '.join(MODES)}, got {self.coordination!r}")
        if self.zk_servers not in (1, 3, 5):
            raise ValueError(f"--zk-servers must be 1, 3 or 5 (an odd ensemble), got {self.zk_servers}")
        if "zk" in faults.parse_nemeses(self.nemesis) and self.coordination != "zookeeper":
            raise ValueError("--nemesis zk needs --coordination zookeeper (there is no ZooKeeper to fault otherwise)")
        if self.coordination == "zookeeper":
            from harness.zookeeper import unavailable_reason

            reason = unavailable_reason()
            if reason and self.deploy == "local":
                raise ValueError(f"--coordination zookeeper: {reason}")

    def partition_shapes(self) -> list[str]:
        """The partition shapes to draw from."""
        return _choices(self.partition, SHAPES, "--partition", every="all")

    def target_specs(self) -> list[str]:
        """Which nodes kill and pause draw from: one, minority, majority, all of them."""
        return _choices(self.targets, TARGET_SPECS, "--targets")

    def storage_choices(self) -> dict[str, list[str]]:
        """What the corrupt and disk nemeses draw from (nemesis/storage.py)."""
        return {"corrupt_modes": _choices(self.corrupt_modes, CORRUPT_MODES, "--corrupt-modes"),
                "disks": _choices(self.disks, DISKS, "--disks")}

    def name(self) -> str:
        """The test's name: workload and nemeses."""
        return self.test_name or f"{self.workload}-{self.nemesis.replace(',', '+')}"

    def checker_params(self) -> dict[str, Any]:
        """What the checkers need to know about the test."""
        from harness import datapaths, topology
        from harness.workloads import make_workload
        from nemesis import faults

        return {
            "workload": self.workload,
            "model": make_workload(self.workload, self._settings()).model,
            # Replicas per key: with several datacenters, replication_factor in each (harness/topology.py).
            "replication_factor": topology.total_replicas(self),
            "read_cl": self.read_cl,
            "write_cl": self.write_cl,
            "nodes": self.node_count(),
            # Each acknowledged write names the replicas that acknowledged it (checkers/acks.py),
            # judged against the keyspace's strategy and, with a topology, each node's datacenter.
            "write_acks": True,
            **topology.checker_params(self),
            "check_time_limit": self.checker_time_limit,
            # Writes stamped by the client: checkers/lww_order.py judges them (checkers/compose.py).
            **({"client_timestamps": True} if self.client_timestamps else {}),
            # The campaign checker holds the run to these: unknown if none of one took effect.
            "nemeses": faults.parse_nemeses(self.nemesis),
            "coordination": self.coordination,
            # Periodic mode may lose writes acknowledged within a sync period of a crash.
            "commitlog_sync": self.commitlog_sync,
            "commitlog_sync_period_ms": datapaths.sync_period_ms(),
            # Unsynced bytes live in process memory (for the crash nemesis): a kill loses them too.
            "volatile_unsynced": any(n in datapaths.VOLATILE_NEMESES for n in faults.parse_nemeses(self.nemesis)),
        }

    def _settings(self) -> WorkloadSettings:
        from harness.workloads import WorkloadSettings

        ops_per_key = DEFAULT_OPS_PER_KEY if self.ops_per_key is None else self.ops_per_key
        return WorkloadSettings(self.key_count, self.read_cl, self.write_cl, ops_per_key, self.delete_fraction,
                                self.value_order, self.client_timestamps)
