"""The ``harness`` command: subcommands registered on one argparse parser.

Exit codes follow Jepsen: 0 valid, 1 invalid, 2 unknown, 254 bad arguments (or unreadable
input), 255 the harness itself failed. Other parts add subcommands (run, cluster, report, serve,
hosts) with :func:`add_command`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from node.cliparse import OneLineErrors, with_suggestion

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2
EXIT_BAD_ARGS = 254  # Jepsen's code for bad command-line arguments
EXIT_INTERNAL = 255  # Jepsen's code for a crash of the harness itself

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A bad argument or unusable input file; the message names it. Exits 254."""


class Parser(OneLineErrors):
    """argparse, but bad arguments exit 254 (Jepsen's code) instead of 2, which means unknown."""

    usage_exit = EXIT_BAD_ARGS


def add_command(sub: argparse._SubParsersAction, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
    """Register a subcommand whose parsed arguments go to ``handler`` (returning an exit code)."""
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(handler=handler)
    return p


def add_topology_options(p: argparse.ArgumentParser, default_rf: int) -> None:
    """--replication-factor, --datacenters and --racks (harness/topology.py), as run and sim take them."""
    p.add_argument("--replication-factor", type=int, help=f"replicas per key, per datacenter with --datacenters "
                   f"or --racks (default {default_rf})")
    p.add_argument("--datacenters", type=int, metavar="D", help="spread the nodes over D datacenters; the "
                   "keyspace uses NetworkTopologyStrategy, --replication-factor replicas in each (default 1)")
    p.add_argument("--racks", type=int, metavar="R", help="racks per datacenter; replicas go to distinct racks "
                   "first (NetworkTopologyStrategy; default 1)")


def add_register_options(p: argparse.ArgumentParser) -> None:
    """The register workload's value and timestamp options, the same for `harness run` and `harness sim`."""
    p.add_argument("--value-order", choices=["increasing", "random"],
                   help="register workload: each key's unique values written 1, 2, 3, ... (default) or in a random "
                        "order, so a reconcile that lets the larger value win where the timestamp decides shows")
    p.add_argument("--client-timestamps", action="store_true", default=None,
                   help="register workload: the client stamps each write itself (CQL's USING TIMESTAMP) from a "
                        "coarse clock, so equal timestamps and ones a microsecond apart are common; judged by the "
                        "lww-order checker (greater timestamp, then tombstone, then greater value) instead of "
                        "linearizability")


# Every subcommand in `harness --help` order: its one-line help and what registers it in full.
# Only the command being run is registered in full (its module imports cost up to a second);
# the others get a stub of the same name and help, which is all the listing shows of them
# (tests/unit/test_cli_startup.py holds these helps equal to the registered ones).
_HELP_RUN = ("run a Jepsen-style campaign: start a cluster, run clients while faults come and go, "
             "check the history and print the verdict (exit 0 valid, 1 invalid, 2 unknown, "
             "254 bad arguments, 255 harness failure)")
_HELP_CHECK = "check a history: linearizability, LWW, quorum, sets, performance"
_HELP_CLUSTER = "start, inspect or stop a long-lived local cluster for manual use (as ccm does)"
_HELP_REPORT = "write RUN_DIR/report.html again from the stored files"
_HELP_SERVE = "browse the stored runs and their reports over HTTP"
_HELP_HOSTS = "network-namespace test hosts with an sshd each (needs root)"
_HELP_SIM = ("run campaigns against a simulated cluster: the real node code in one process under "
             "virtual time, deterministic per seed (exit 0 valid, 1 invalid, 2 unknown, 254 bad arguments)")
_HELP_COVERAGE_UNION = "combine the coverage data of several `harness run --coverage` runs into one figure"


def _register_sim(sub: argparse._SubParsersAction) -> None:
    from harness.simcli import register

    register(sub)


def _commands() -> dict[str, tuple[str, Callable[[argparse._SubParsersAction], None]]]:
    return {
        "run": (_HELP_RUN, _register_run),
        "check": (_HELP_CHECK, _register_check),
        "cluster": (_HELP_CLUSTER, _register_cluster),
        "report": (_HELP_REPORT, _register_report),
        "serve": (_HELP_SERVE, _register_serve),
        "hosts": (_HELP_HOSTS, _register_hosts),
        "sim": (_HELP_SIM, _register_sim),
        "coverage-union": (_HELP_COVERAGE_UNION, _register_coverage_union),
    }


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand registered; with ``only``, that one in full and the
    others by name and help (what `harness --help` shows), so a call imports what it runs."""
    parser = Parser(prog="harness", description="ringlab: a Jepsen-style testbed for Cassandra-like stores")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (help, register) in _commands().items():
        if only is None or name == only:
            register(sub)
        else:
            sub.add_parser(name, help=help)
    return parser


def _command_named(argv: Sequence[str]) -> str:
    """The subcommand argv names: its first word that is not an option ("" when none is)."""
    # The top-level parser takes no option with a value, so the first other word is the command.
    for word in argv:
        if not word.startswith("-"):
            return word
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the subcommand and return its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command_named(argv))
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        # One line, naming the commands (the usage line alone says only "COMMAND ...").
        names = next((", ".join(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)), "")
        print(f"harness: error: a COMMAND is required: {names} (see `harness --help`)", file=sys.stderr)
        return EXIT_BAD_ARGS
    try:
        return int(handler(args))
    except UsageError as e:
        print(f"harness {args.command}: error: {with_suggestion(str(e))}", file=sys.stderr)
        return EXIT_BAD_ARGS
    except KeyboardInterrupt:
        # Stopped before it decided anything (a second Ctrl-C while a run was checking, a check
        # cut short): unknown, as an interrupted run is, not a harness failure.
        print("harness: interrupted; nothing was decided (exit 2)", file=sys.stderr)
        return EXIT_UNKNOWN
    except Exception:  # the harness itself failed: say so loudly, with the traceback
        traceback.print_exc()
        print("harness: internal error (exit 255)", file=sys.stderr)
        return EXIT_INTERNAL


# --- harness run ---------------------------------------------------------------------------


def _register_run(sub: argparse._SubParsersAction) -> None:
    """Register `harness run`."""
    from harness.run_options import DEFAULT_NODES, DEFAULT_OPS_PER_KEY, DEPLOYS, VALIDATION_FAULTS, WORKLOADS, RunOptions
    from harness.ssh_options import add_ssh_options

    d = RunOptions()
    p = add_command(sub, "run", _cmd_run, _HELP_RUN)
    p.add_argument("--config", metavar="FILE", help="TOML file with any of these options (flags override it)")
    p.add_argument("--workload", choices=list(WORKLOADS), help=f"what the clients do (default {d.workload})")
    p.add_argument("--nemesis", help="faults: comma list of partition,kill,pause,clock,latency,membership,zk,flush-compact,"
                   "repair,crash (a kill that loses unsynced commit log writes),corrupt (damage a node's files; "
                   "local only),disk (fail a node's commit log or data disk),admin (snapshots and nodetool-style "
                   "commands through ringctl),move (ringctl move, then cleanup),clients (malformed requests and "
                   "frames to a node), or all (every one but membership, zk, corrupt, disk, admin, move and clients) "
                   f"/ none (default {d.nemesis})")
    p.add_argument("--nemesis-interval", type=float, metavar="S", help="seconds between fault changes (default: fit at least 3 windows of each nemesis into the time limit, at most 10 s apart)")
    p.add_argument("--partition", help=f"partition shapes: one, majority, majorities-ring, minority-third, bridge, random-halves, comma list or all (default {d.partition})")
    p.add_argument("--targets", help=f"how many nodes kill and pause hit, drawn from a comma list of one, minority, majority, all (default {d.targets})")
    p.add_argument("--corrupt-modes", help=f"what the corrupt nemesis damages, drawn from a comma list of stopped "
                   f"(any file of a stopped node), live (an SSTable record under a running node) (default {d.corrupt_modes})")
    p.add_argument("--disks", help=f"which disk the disk nemesis fails, drawn from a comma list of commitlog, data "
                   f"(SSTable writes, and reads with EIO) (default {d.disks})")
    p.add_argument("--time-limit", type=float, metavar="S", help=f"seconds of workload (default {d.time_limit:g})")
    p.add_argument("--concurrency", help=f"client processes: a number, or Nn for N per node (default {d.concurrency})")
    p.add_argument("--rate", type=float, help=f"target operations per second over all clients, 0 = unthrottled (default {d.rate:g})")
    p.add_argument("--nodes", type=nodes_arg,
                   help=f"local cluster size (default {DEFAULT_NODES}); with --deploy ssh a host list host1,host2,..., "
                        "or with --nodes-file (or vagrant) how many of the hosts start nodes (default all; the "
                        "others are spares the membership nemesis joins)")
    p.add_argument("--deploy", choices=list(DEPLOYS), help="where the cluster runs: local processes (default), "
                   "hosts over SSH (--nodes-file/--nodes), or the Vagrant VMs of vagrant/")
    add_topology_options(p, d.replication_factor)
    p.add_argument("--read-cl", type=str.upper, help=f"read consistency level (default {d.read_cl})")
    p.add_argument("--write-cl", type=str.upper, help=f"write consistency level (default {d.write_cl})")
    p.add_argument("--key-count", type=int, help=f"keys in use at once (default {d.key_count})")
    p.add_argument("--ops-per-key", type=int, help=f"register, row and batch workloads: operations before a key is retired (default {DEFAULT_OPS_PER_KEY})")
    p.add_argument("--delete-fraction", type=float, metavar="F",
                   help="register, row and batch workloads: the share of writes that are deletes "
                        "(default 0 for register and batch, 0.3 for row: half column deletes, half row deletes)")
    add_register_options(p)
    p.add_argument("--seed", type=int, help="seed for the operation stream and the fault schedule (default: random, recorded)")
    p.add_argument("--test-count", type=int, help=f"how many campaigns to run (default {d.test_count})")
    p.add_argument("--leave-db-running", action="store_true", default=None, help="keep the nodes (and the fault proxy) running afterwards")
    p.add_argument("--store", metavar="DIR", help=f"where runs are stored (default {d.store})")
    p.add_argument("--toxiproxy", metavar="URL", help="drive an existing Toxiproxy server instead of ringlab's fault proxy")
    p.add_argument("--junit-xml", metavar="FILE", help="also write the verdicts as JUnit XML")
    p.add_argument("--recovery-time", type=float, metavar="S", help=f"seconds to wait after healing before final reads (default {d.recovery_time:g})")
    p.add_argument("--commitlog-sync", choices=["periodic", "batch", "group"], help=f"the nodes' commit log sync mode (default {d.commitlog_sync})")
    p.add_argument("--commit-failure-policy", choices=["stop", "die", "ignore"],
                   help=f"what a node does after a failed commit log write or fsync: refuse writes until restarted, "
                        f"exit, or fail only the writes it covered (default {d.commit_failure_policy})")
    p.add_argument("--memtable-flush-kb", type=int, metavar="N",
                   help=f"flush a node's memtable at N KB and its oldest tables once the commit log holds N KB, in "
                        f"N KB segments, so a short campaign flushes, compacts and recycles segments "
                        f"(default {d.memtable_flush_kb}; 0 = the store's 64 MB memtables and 32 MB segments)")
    p.add_argument("--gc-grace", type=int, metavar="SECONDS",
                   help=f"the table's gc_grace_seconds: compaction purges tombstones older than this (default {d.gc_grace})")
    p.add_argument("--file-stream-min-bytes", type=int, metavar="N",
                   help="local nodes move SSTables of at least N bytes whole in range transfers (bootstrap, decommission, "
                        "removenode, move, repair); 0 sends every file wholly inside a range whole, so a campaign's "
                        "small files take the whole-file path (default: the store's 1 MiB)")
    p.add_argument("--load-balance", type=float, metavar="S",
                   help="turn on the nodes' load balancing (the paper's: a light node moves a token into a heavy "
                        "node's range), comparing loads every S seconds on average (default off)")
    p.add_argument("--read-repair", choices=["BLOCKING", "NONE"], help=f"the table's read repair (default {d.read_repair})")
    p.add_argument("--final-repair", action="store_true", default=None,
                   help="after the final reads, drain the hints and repair every node (anti-entropy), then read "
                        "every replica: they must all hold the same data")
    p.add_argument("--no-restart-check", action="store_true", default=None,
                   help="skip the last step: killing and restarting every node and reading every key again "
                        "(what each node held must come back from its files)")
    p.add_argument("--fault", dest="validation_faults", action="append", metavar="SWITCH",
                   help="turn on a node validation fault switch (repeatable): " + ", ".join(VALIDATION_FAULTS))
    p.add_argument("--test-name", help="name of the test in the store (default WORKLOAD-NEMESIS)")
    p.add_argument("--coordination", choices=["gossip", "zookeeper"],
                   help=f"who assigns a joining node's tokens: the node itself from gossip, or the paper's "
                        f"ZooKeeper leader (a local ensemble the harness starts; default {d.coordination})")
    p.add_argument("--zk-servers", type=int, metavar="N",
                   help=f"with --coordination zookeeper: 1, 3 or 5 ZooKeeper servers (default {d.zk_servers})")
    p.add_argument("--coverage", action="store_true", default=None,
                   help="measure the node processes with coverage.py: coverage/ (HTML) in the run directory, "
                        "the node/ table in results.json and the report")
    add_ssh_options(p)


def nodes_arg(value: str) -> int | str:
    """``--nodes`` (harness/deploy/ssh.py's nodes_arg, imported when a --nodes is given)."""
    from harness.deploy.ssh import nodes_arg as parse

    return parse(value)


def _cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from harness import config_file
    from harness.run import run_command
    from harness.run_options import RunOptions

    names = {f.name for f in fields(RunOptions)}
    values: dict[str, Any] = {}
    if args.config:
        try:
            values = config_file.load(args.config, RunOptions)
        except config_file.ConfigError as exc:
            raise UsageError(str(exc)) from None
    for key in names:
        v = getattr(args, key, None)
        if v is not None and not (key == "strict_host_key_checking" and v is False):
            values[key] = str(v) if key == "nodes_file" else v
    try:
        opts = RunOptions(**values)
        opts.validate()
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return run_command(opts)


# --- harness cluster ---------------------------------------------------------------------------


def _register_cluster(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "cluster", _cmd_cluster, _HELP_CLUSTER)
    p.add_argument("action", choices=["up", "down", "status"], help="what to do")
    p.add_argument("--dir", default="store/cluster", help="where the cluster keeps its state and data (default store/cluster)")
    p.add_argument("--nodes", type=_positive_int, default=3, help="how many nodes `up` starts (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed for the nodes' tokens (default 0)")


def _cmd_cluster(args: argparse.Namespace) -> int:
    import trio

    from harness.deploy.local import DeployError, cluster_down, cluster_status, cluster_up

    where = Path(args.dir).resolve()
    if args.action == "up" and (where / "cluster.json").exists():
        # A user mistake, not a failed start: say how to stop the one that is there.
        raise UsageError(f"a cluster is already described by {where / 'cluster.json'}; "
                         f"stop it with `harness cluster down --dir {args.dir}` first")
    if args.action == "up":
        from harness.preflight import dir_problem

        problem = dir_problem(where)
        if problem:
            raise UsageError(f"--dir {args.dir}: cannot keep a cluster there: {problem}")
    try:
        if args.action == "up":
            state = trio.run(cluster_up, where, args.nodes, args.seed)
            for nid, n in state["nodes"].items():
                print(f"{nid}  client {n['client']}  internode {n['internode']}  pid {n['pid']}")
            print(f"fault proxy API {state['proxy']['url']}")
            print(f"cluster secret (for ringctl --secret): {state['secret']}")
            where_flag = "" if args.dir == "store/cluster" else f" --cluster-dir {args.dir}"
            print(f"admin: ringctl{where_flag} --node n1 status  (reads the ports and secret from {where})")
            print(f"state: {where / 'cluster.json'}; stop with: harness cluster down --dir {args.dir}")
        elif args.action == "down":
            stopped = cluster_down(where)
            print("stopped: " + (", ".join(stopped) or "nothing was running"))
        else:
            rows = trio.run(cluster_status, where)
            for r in rows:
                seen = " ".join(f"{k}={v}" for k, v in sorted(r.get("sees", {}).items()))
                print(f"{r['node']}  {r['process']:<8} pid {r['pid']}  client {r['client']}  "
                      + (seen or r.get("error", "")))
    except DeployError as e:
        print(f"harness cluster {args.action}: {e}", file=sys.stderr)
        return EXIT_INTERNAL if args.action == "up" else EXIT_BAD_ARGS
    return 0


# --- harness report / serve ------------------------------------------------------------------


def _register_report(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "report", _cmd_report, _HELP_REPORT)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (e.g. store/latest)")


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report import report_command

    return report_command(args.run_dir)


def _register_serve(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "serve", _cmd_serve, _HELP_SERVE)
    p.add_argument("--store", default="store", metavar="DIR", help="the store directory (default store)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")


def _cmd_serve(args: argparse.Namespace) -> int:
    from harness.serve import serve_command

    return serve_command(args.store, args.host, args.port)


def _register_coverage_union(sub: argparse._SubParsersAction) -> None:
    from harness.campaign_coverage import add_union_options, union_command

    add_union_options(add_command(sub, "coverage-union", union_command, _HELP_COVERAGE_UNION))


def _register_hosts(sub: argparse._SubParsersAction) -> None:
    from harness.deploy.hosts import add_hosts_parser

    p = add_hosts_parser(sub)
    p.set_defaults(handler=lambda args: args.func(args))


# --- harness check ---------------------------------------------------------------------------


def _register_check(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "check", cmd_check, _HELP_CHECK)
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                   help="a run directory (reads test.json and history.jsonl, writes results.json); a history file is read as --history")
    p.add_argument("--history", metavar="FILE", help="a history file: .jsonl, Jepsen or Knossos .edn, Porcupine kv logs, Jepsen log lines")
    p.add_argument("--model", choices=_CHECK_MODELS,
                   help="the model to check against (default: test.json's, else what the operations are)")
    p.add_argument("--replication-factor", type=_positive_int, metavar="N", help="replication factor (enables the quorum checker)")
    p.add_argument("--read-cl", type=str.upper, metavar="CL", help="read consistency level (ONE, QUORUM, ALL, ...)")
    p.add_argument("--write-cl", type=str.upper, metavar="CL", help="write consistency level (ONE, QUORUM, ALL, ...)")
    p.add_argument("--time-limit", type=_positive_float, metavar="S", help="linearizability search budget in seconds (unknown after)")
    p.add_argument("--checkers", metavar="NAMES", help="comma-separated subset: linearizable,lww,quorum,set,counter,isolation,perf,campaign,nemesis-checks")
    p.add_argument("--independent", action="store_true", help="EDN values are jepsen.independent [key value] tuples")
    p.add_argument("--results", metavar="FILE", help="also write the results JSON here")
    p.add_argument("--json", action="store_true", help="print the results JSON instead of the summary")
    m = p.add_argument_group("model options (defaults: the conventions the history's format implies, "
                             "else ringlab's; see docs/history-format.md)")
    m.add_argument("--init", metavar="VALUE", type=_init_value, default=argparse.SUPPRESS,
                   help="every register's / key's initial value, as JSON (0, \"\", a JSON object of values "
                        "by key for multi-register) or a bare string; nil or null for nil (Knossos' and "
                        "ringlab's default; Porcupine's kv model starts at \"\")")
    m.add_argument("--nil-read", choices=["unknown", "value"],
                   help="register/kv: a read of nil is 'value unknown' (Knossos, Jepsen) or the value nil (ringlab, Porcupine)")
    m.add_argument("--failed-cas", choices=["observe", "ignore"],
                   help="register/kv: a failed cas observed that the value differed (Porcupine's etcd model) "
                        "or did not happen (Knossos, Jepsen, ringlab)")
    m.add_argument("--kv-append", choices=["string", "list"],
                   help="kv: append concatenates strings (Porcupine) or builds a list (ringlab)")
    m.add_argument("--atomic-reads", action="store_true", default=None,
                   help="set: a read must be a snapshot of the whole set (default: each element is its own "
                        "object, as a store keeping one cell per element promises)")


_CHECK_MODELS = ["register", "kv", "set", "counter", "row", "batch", "mutex", "multi-register"]
# The model options `harness check` takes (checker params of the same names).
_MODEL_OPTIONS = ("init", "nil_read", "failed_cas", "kv_append", "atomic_reads")


def _init_value(s: str) -> Any:
    """--init: a JSON value, nil, or else the string itself."""
    if s == "nil":
        return None
    try:
        return json.loads(s)
    except ValueError:
        return s


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {s!r}")
    return v


# Keys of test.json the checkers use, with the names the campaign runner may give them.
_TEST_JSON_KEYS = {
    "model": ("model", "workload"),
    "replication_factor": ("replication_factor", "rf"),
    "read_cl": ("read_cl",),
    "write_cl": ("write_cl",),
    "nodes": ("nodes",),
    "time_limit": ("check_time_limit",),
    "nemeses": ("nemeses",),
    "interrupted": ("interrupted",),
    "init": ("init",),
    "nil_read": ("nil_read",),
    "failed_cas": ("failed_cas",),
    "kv_append": ("kv_append",),
    "atomic_reads": ("atomic_reads",),
    "commitlog_sync": ("commitlog_sync",),
    "commitlog_sync_period_ms": ("commitlog_sync_period_ms",),
    "volatile_unsynced": ("volatile_unsynced",),
    "client_timestamps": ("client_timestamps",),
    "write_acks": ("write_acks",),
    "replication": ("replication",),
    "node_datacenters": ("node_datacenters",),
    "ring_at_start": ("ring_at_start",),
}
# Parameters whose value is a mapping (the others are scalars or lists, and a mapping under their
# name is some other record's).
_MAPPING_KEYS = frozenset({"init", "replication", "node_datacenters", "ring_at_start"})


def params_from_test(test: dict[str, Any]) -> dict[str, Any]:
    """Checker params from a run's test.json (top level or under "params"/"workload_params")."""
    sources = [test]
    for nest in ("params", "workload_params", "checker"):
        if isinstance(test.get(nest), dict):
            sources.append(test[nest])
    out: dict[str, Any] = {}
    for name, aliases in _TEST_JSON_KEYS.items():
        for src in sources:
            for a in aliases:
                if a in src and src[a] is not None and (name in _MAPPING_KEYS or not isinstance(src[a], dict)):
                    out.setdefault(name, src[a])
    if isinstance(out.get("nodes"), list):
        out["nodes"] = len(out["nodes"])
    storage = test.get("storage")
    node = storage.get("node") if isinstance(storage, dict) else None
    if "volatile_unsynced" not in out and isinstance(node, dict) and node.get("volatile_unsynced") is True:
        out["volatile_unsynced"] = True  # a run recorded before the checker parameter existed
    return out


def _with_line(history: Any, msg: str) -> str:
    """A checker's "op N: ..." error, prefixed with the file and line that holds op N."""
    m = re.match(r"op (\d+)\b", msg)
    if m is None or not isinstance(history, (str, os.PathLike)):
        return msg
    from harness.history import op_line

    line = op_line(history, int(m.group(1)))
    return msg if line is None else f"{history}:{line}: {msg}"


def cmd_check(args: argparse.Namespace) -> int:
    """``harness check``: run the checkers and print the verdict; exit 0/1/2."""
    from checkers.compose import CHECKERS, check_all
    from checkers.quorum import replicas_for
    from harness.history import HistoryError, has_client_ops

    if args.run_dir and args.history:
        raise UsageError("give either RUN_DIR or --history, not both")
    if args.run_dir and Path(args.run_dir).is_file():
        # A history file where the run directory belongs: its run directory when it is one's
        # history.jsonl (the verdict's heading names that file), else a history of its own.
        given = Path(args.run_dir)
        if given.name == "history.jsonl" and (given.parent / "test.json").is_file():
            args.run_dir = str(given.parent)
        else:
            args.run_dir, args.history = None, str(given)
    params: dict[str, Any] = {}
    save_to: Path | None = Path(args.results) if args.results else None
    if args.run_dir:
        run = Path(args.run_dir)
        if not run.exists():
            raise UsageError(f"{str(run)!r} does not exist (give a run directory or a history file)")
        if not run.is_dir():
            raise UsageError(f"RUN_DIR {str(run)!r} is not a directory")
        history = run / "history.jsonl"
        if not history.exists():
            raise UsageError(f"RUN_DIR {str(run)!r} has no history.jsonl")
        test_json = run / "test.json"
        if test_json.exists():
            try:
                test = json.loads(test_json.read_text(encoding="utf-8"))
            except ValueError as e:
                raise UsageError(f"{test_json} is not valid JSON: {e}") from None
            if not isinstance(test, dict):
                raise UsageError(f"{test_json} must hold a JSON object")
            params = params_from_test(test)
        from checkers.convergence import params_for_run
        from checkers.liveness import params_for_run as liveness_params
        from checkers.movement import params_for_run as movement_params
        from checkers.restart import params_for_run as restart_params
        from checkers.provenance import params_for_run as provenance_params

        params.update(params_for_run(run))
        params.update(liveness_params(run))
        params.update(movement_params(run))
        params.update(restart_params(run))
        params.update(provenance_params(run))
        save_to = save_to or run / "results.json"
    elif args.history:
        history = Path(args.history)
        if not history.exists():
            raise UsageError(f"--history {str(history)!r}: no such file")
    else:
        raise UsageError("give a RUN_DIR or --history FILE")
    for name in ("model", "replication_factor", "read_cl", "write_cl", "time_limit"):
        v = getattr(args, name)
        if v is not None:
            params[name] = v
    convention = _model_options(args, params, history)
    for name in ("read_cl", "write_cl"):
        if params.get(name) is not None:
            try:
                replicas_for(params[name], int(params.get("replication_factor") or 3))
            except ValueError as e:
                raise UsageError(f"--{name.replace('_', '-')}: {e}") from None
    if args.checkers:
        names = [n.strip() for n in args.checkers.split(",") if n.strip()]
        bad = [n for n in names if n not in CHECKERS]
        if bad:
            raise UsageError(f"--checkers: unknown checker {bad[0]!r}; expected from {', '.join(CHECKERS)}")
        if "quorum" in names and not params.get("replication_factor"):
            raise UsageError("--checkers quorum needs --replication-factor")
        params["checkers"] = names
    source: Any = history
    try:
        if args.independent:
            from harness.history import read_history

            source = list(read_history(history, independent=True))
        result = check_all(source, params, save_to=None)
        if not has_client_ops(source):
            # Jepsen's rule too: a history with no operations proves nothing either way.
            result.valid = "unknown"
            result.params["unknown_because"] = "the history has no client operations"
    except HistoryError as e:
        raise UsageError(f"cannot read history {str(history)!r}: {_with_line(history, str(e))}") from None
    except OSError as e:  # a disk error or permissions while reading: the file, not the harness
        raise UsageError(f"cannot read history {str(history)!r}: {e.strerror or e}") from None
    if save_to is not None:
        result.save(save_to)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        if convention:
            print(convention)
        if "unknown_because" in result.params:
            print(f"unknown: {result.params['unknown_because']}")
        print_verdict(result, history, save_to)
    return result.exit_code()


def _model_options(args: argparse.Namespace, params: dict[str, Any], history: Path) -> str | None:
    """Fill the model and its options: the command line, then test.json, then the conventions the
    history's format implies (Knossos EDN, Porcupine logs, ...). Returns the line that says which."""
    from checkers.conventions import RINGLAB, detect
    from checkers.models import MODEL_OPTIONS

    convention, inferred = detect(history)
    params.setdefault("model", inferred)
    model = params["model"]
    if model not in _CHECK_MODELS:
        raise UsageError(f"model {model!r} is not one of {', '.join(_CHECK_MODELS)}")
    allowed = MODEL_OPTIONS.get(model, ())
    for name in _MODEL_OPTIONS:
        # --init is absent unless given (nil is a value); the others are None when not given.
        if getattr(args, name, None) is not None or name == "init" and hasattr(args, "init"):
            if name not in allowed:
                raise UsageError(f"--{name.replace('_', '-')} does not apply to the {model} model"
                                 + (f" (it takes {', '.join('--' + a.replace('_', '-') for a in allowed)})" if allowed else ""))
            params[name] = getattr(args, name)
    for name, v in convention.options.items():
        if name in allowed:
            params.setdefault(name, v)
    if model == "multi-register" and isinstance(params.get("init"), list):
        raise UsageError("--init for multi-register is one value or a JSON object of values by key")
    params["conventions"] = convention.name
    if convention is RINGLAB and not any(n in params for n in _MODEL_OPTIONS):
        return None  # ringlab's own history with ringlab's defaults: nothing to say
    return convention.describe(model, params)


def _verdict_word(v: Any) -> str:
    return {True: "valid", False: "INVALID", "unknown": "unknown"}[v]


def _clip_counts(summary: str, width: int) -> str:
    """At most ``width`` characters, cut between counts (a number cut in half reads as another)."""
    if len(summary) <= width:
        return summary
    cut = summary.rfind(", ", 0, width - 2)
    return (summary[:cut] if cut > 0 else summary[:width - 2]) + ", …"


def print_verdict(result: Any, history: Path, saved: Path | None) -> None:
    """A readable summary: one line per checker, the first anomalies explained, the overall verdict."""
    lines: list[tuple[str, str, str]] = []
    for name, r in result.results.items():
        summary = ", ".join(f"{k} {v}" for k, v in r.counts.items() if v and not k.startswith("keys_"))
        if not summary and r.valid is True and r.details.get("reason"):
            # Valid because it looked at nothing: say so, a bare "valid" would read as checked.
            summary = f"not judged: {r.details['reason']}"
        lines.append((name, _verdict_word(r.valid), _clip_counts(summary, 160)))
    if sys.stdout.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:  # pragma: no cover - rich is a dependency
            pass
        else:
            console = Console()
            table = Table(title=f"harness check {history}")
            table.add_column("checker")
            table.add_column("verdict")
            table.add_column("counts")
            colour = {"valid": "green", "INVALID": "bold red", "unknown": "yellow"}
            for name, word, summary in lines:
                table.add_row(name, f"[{colour[word]}]{word}[/]", summary)
            console.print(table)
            for name, r in result.results.items():
                for a in r.anomalies[:3]:
                    console.print(f"[red]{name}[/] {a.kind}: {a.explanation}", highlight=False)
                if r.valid == "unknown" and r.details.get("reason"):
                    console.print(f"[yellow]{name}[/]: {r.details['reason']}")
            word = _verdict_word(result.valid)
            console.print(f"[{colour[word]}]Overall: {word}[/]" + (f"  (results: {saved})" if saved else ""))
            return
    print(f"harness check {history}")
    for name, word, summary in lines:
        print(f"  {name:<13} {word:<8} {summary}")
    for name, r in result.results.items():
        for a in r.anomalies[:3]:
            print(f"  {name} {a.kind}: {a.explanation}")
        if r.valid == "unknown" and r.details.get("reason"):
            print(f"  {name}: {r.details['reason']}")
    print(f"Overall: {_verdict_word(result.valid)}" + (f"  (results: {saved})" if saved else ""))


if __name__ == "__main__":
    sys.exit(main())
