"""`harness run`: one Jepsen-style campaign from cluster start to verdict.

The phases, each with its own cancel scope so Ctrl-C or a crash at any point still heals every
fault, stops every node and checks what was recorded:

1. make the run directory, write test.json, start the fault proxy and the nodes, wait for gossip;
2. create the keyspace and table;
3. run the clients and the nemesis schedule until the time limit;
4. heal every fault, wait for recovery, read every replica of every key directly, read every key
   at the read level, then at ALL (through a rotating coordinator), read every replica again,
   wait for the hints to be delivered and read every replica a third time (harness/convergence.py);
5. stop the cluster, run the checkers, write results.json (and the report), print the verdict.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import platform
import random
import secrets
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import trio

from harness import datapaths, liveness_probe, placement_probe, store, topology
from harness.client import NodeConnection
from harness.convergence import JUDGED_MODELS, convergence_pass, full_repair, snapshot_keys, spec_of
from harness.cell_snapshot import ttl_pass
from harness.movement_probe import MovementProbe
from harness.restart_pass import restart_pass, skip_reason
from harness.deploy import make_deployment
from harness.deploy.local import DeployError
from harness.generator import Rate, Recorder, Worker, parse_concurrency
from harness.history import HistoryWriter
from harness.progress import Progress
# RunOptions lives in its own module so `harness run --help` starts fast; imported from here too.
from harness.run_options import DEFAULT_NODES, VALIDATION_FAULTS, RunOptions, _choices  # noqa: F401
from harness.workloads import KEYSPACE, Invocation, make_workload
from nemesis import faults
from node.client import open_client

log = logging.getLogger("harness.run")

# Client-side timeout per operation: above the store's read timeout (5 s) so the store's own
# ReadTimeout/WriteTimeout normally answers first, and a paused node still ends as info/fail.
OP_TIMEOUT = 7.0
# After healing, how long to wait for every node to see every other UP again before final reads.
RECOVERY_CONVERGE_TIMEOUT = 60.0
# Final reads can fail while a restarted node catches up; try a few times.
FINAL_READ_ATTEMPTS = 5
# Seconds of retrying per final-read level; past them each remaining key gets one attempt. A node
# that crashed for good fails every ALL read, and 5 paced attempts per key took 7.5 s a key
# (a 158-key campaign spent 20 minutes there).
FINAL_READ_RETRY_BUDGET_S = 30.0
# At the time limit, how long a nemesis step in progress (a membership change streams data) may
# take to complete before it is cancelled.
STEP_FINISH_TIMEOUT = 240.0
# How long the clients' open operations get to complete once the time limit stops new ones:
# cut mid-flight, every unthrottled (--rate 0) client left an invoke with no completion (an
# `info` drawn up to the history's end); ops on healthy nodes finish in milliseconds, and one
# stuck on a faulted node is cut after this and counts as `info`, as before.
CLIENT_DRAIN_TIMEOUT = 1.0
# The ZooKeeper assignment log a zookeeper-coordinated run leaves (checkers/assignments.py).
ZK_ASSIGNMENTS_FILE = "zk-assignments.json"


@dataclass
class Outcome:
    """What one campaign produced."""

    run_dir: Path
    valid: bool | str
    results: Any  # checkers.compose.ComposedResult
    ops: int
    completed: int
    duration_s: float
    ops_per_s: float
    interrupted: bool = False
    coverage: dict[str, Any] | None = None
    started: float | None = None  # wall-clock start (JUnit's timestamp)
    seed: int | None = None


def versions() -> dict[str, str]:
    """Versions recorded in test.json."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("ringlab", "trio", "msgpack"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def setup_logging(run_dir: Path) -> logging.Handler:
    """harness.log in the run directory gets every harness and nemesis event."""
    handler = logging.FileHandler(run_dir / store.LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


async def campaign(opts: RunOptions, run_dir: Path, progress: Progress, *, deployment: Any = None,
                   secret: str | None = None, report: bool = True) -> Outcome:
    """Run one campaign in ``run_dir``; always heals, stops and checks.

    ``deployment`` and ``secret`` are given by ``harness sim`` (its world lives in the caller's
    Trio run, its secret comes from the seed); otherwise ``opts.deploy`` decides. A sweep passes
    ``report=False`` and writes the report only for the seeds it keeps.
    """
    seed = opts.seed if opts.seed is not None else secrets.randbits(31)
    rng = random.Random(seed)
    secret = secret or secrets.token_hex(16)
    test: dict[str, Any] = {
        "name": opts.name(),
        "options": {k: v for k, v in asdict(opts).items() if k != "password"},
        "seed": seed,
        "params": opts.checker_params(),
        "versions": versions(),
        "start_time": time.time(),
        "deploy": opts.deploy,
        "storage": datapaths.recorded(opts),
    }
    store.write_json(run_dir / store.TEST_FILE, test)
    deployment = deployment or make_deployment(opts, run_dir, secret, seed)
    cluster = deployment.cluster
    # A simulated cluster is reached over its own network; real ones over TCP (None).
    client_net = getattr(cluster, "client_network", None)
    node_ids = cluster.node_ids()
    concurrency = parse_concurrency(opts.concurrency, len(node_ids))
    workload = make_workload(opts.workload, opts._settings())
    test["nodes"] = cluster.describe()
    if topology.enabled(opts):
        test["topology"] = topology.recorded(opts, node_ids)
    test["concurrency"] = concurrency
    test["params"]["nodes"] = len(node_ids)
    store.write_json(run_dir / store.TEST_FILE, test)
    history_path = run_dir / store.HISTORY_FILE
    started = time.monotonic()
    interrupted = False
    recorder: Recorder | None = None
    schedule: faults.Schedule | None = None
    workload_s = 0.0
    try:
        progress.phase(f"starting {len(node_ids)} nodes ({opts.deploy})")
        await deployment.setup()
        progress.phase("waiting for gossip to converge")
        await cluster.wait_converged()
        names = faults.parse_nemeses(opts.nemesis)
        clock_db = await deployment.clock_db() if "clock" in names else deployment.db
        nemeses = faults.build(names, deployment.db, deployment.net, opts.partition_shapes(), clock_db=clock_db,
                               target_specs=opts.target_specs(), zookeeper=getattr(deployment, "zookeeper", None),
                               operator=operator_tools(opts, cluster, secret, run_dir, workload, client_net),
                               storage=opts.storage_choices())
        await create_schema(cluster, secret, opts, workload.table, client_net)
        if any(getattr(n, "changes_ring", False) for n in nemeses):
            # The ring the run starts from, which the misplaced-data check replays the nemesis's
            # ring changes from (checkers/misplaced.py).
            test["ring_at_start"] = await placement_probe.ring_now(cluster, secret, cluster.node_ids(), client_net)
        # A simulated run writes its history buffered (SimDeployment.flush_history).
        with HistoryWriter(history_path, flush=getattr(deployment, "flush_history", True)) as writer:
            recorder = Recorder(writer, getattr(deployment, "clock_ns", None))
            # The wall time of the history's zero, so node log lines line up with operations.
            test["history_start_time"] = time.time() - recorder.now_ns() / 1e9
            store.write_json(run_dir / store.TEST_FILE, test)
            schedule = faults.Schedule(nemeses, opts.nemesis_interval, rng, recorder.nemesis, time_limit=opts.time_limit)
            test["nemesis_schedule"] = schedule.describe()
            progress.attach(recorder, schedule, opts.time_limit)
            progress.phase("running")
            def connect(nid: str) -> NodeConnection:
                return NodeConnection(*cluster.client_address(nid), secret=secret, timeout=OP_TIMEOUT, network=client_net)

            def relocate(nid: str) -> tuple[str, NodeConnection] | None:
                # A client of a node that left the ring (membership nemesis) moves to a member.
                current = cluster.node_ids()
                if nid in current or not current:
                    return None
                new = current[int(nid.lstrip("n") or 0) % len(current)]
                return new, connect(new)

            workers = [
                Worker(i, concurrency, node_ids[i % len(node_ids)], connect(node_ids[i % len(node_ids)]),
                       random.Random(rng.getrandbits(64)), relocate)
                for i in range(concurrency)
            ]
            rate = Rate(opts.rate or None, concurrency)
            op_rng = random.Random(rng.getrandbits(64))

            def cl_of(op: Invocation) -> str:
                return opts.write_cl if workload.is_write(op) else opts.read_cl

            workload_started = time.monotonic()
            # Every node's failure-detector view, sampled through the run (checkers/liveness.py).
            sampler = liveness_probe.Sampler(cluster, secret, run_dir, recorder.now_ns, client_net)
            with trio.CancelScope() as main_phase:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_interrupt, main_phase)
                    nursery.start_soon(schedule.run)
                    nursery.start_soon(sampler.run)
                    if "membership" in names and workload.model in JUDGED_MODELS and isinstance(topology.placement_rf(opts), int):
                        # Every replica read the moment a ring changes during a membership step.
                        probe = MovementProbe(cluster, secret, run_dir, recorder.now_ns, lambda: schedule.running,
                                              KEYSPACE, workload.table,
                                              snapshot_keys(workload),
                                              topology.placement_rf(opts), client_net, spec_of(workload))
                        nursery.start_soon(probe.run)
                    stop_clients, clients_done = trio.Event(), trio.Event()

                    async def run_clients() -> None:
                        async with trio.open_nursery() as clients:
                            for w in workers:
                                clients.start_soon(w.run, workload, recorder, rate,
                                                   lambda: workload.next_op(op_rng), cl_of, stop_clients)
                        clients_done.set()

                    nursery.start_soon(run_clients)
                    await trio.sleep(opts.time_limit)
                    # The clients keep going while a nemesis step in progress completes.
                    if schedule.running:
                        progress.phase(f"time limit reached; letting {schedule.running} finish")
                    if not await schedule.finish(STEP_FINISH_TIMEOUT):
                        log.warning("nemesis step still running after %g s; cancelled", STEP_FINISH_TIMEOUT)
                    stop_clients.set()
                    with trio.move_on_after(CLIENT_DRAIN_TIMEOUT):
                        await clients_done.wait()
                    nursery.cancel_scope.cancel()
            interrupted = main_phase.cancelled_caught
            test["fault_windows"] = dict(schedule.windows)
            workload_s = time.monotonic() - workload_started
            crashed = getattr(cluster, "crashed", dict)()
            # A node that exited as its commit_failure_policy = die says (the disk nemesis broke
            # its commit log disk) did what it was told: not a crash (nemesis/storage.py).
            for n in schedule.nemeses:
                for nid in getattr(n, "expected_exits", set)():
                    crashed.pop(nid, None)
            if crashed:
                # A node that dies on its own is a bug in the store whatever the checkers say.
                test["crashed_nodes"] = crashed
                for nid, why in crashed.items():
                    log.error("node %s crashed: %s", nid, why)
                    print(f"harness: node {nid} crashed during the run: {why}", file=sys.stderr)
            progress.phase("healing")
            healed = await schedule.heal_all()
            recorder.nemesis("info", "heal", {"healed": sorted(healed),
                                              **{f"{k}_result": v for k, v in healed.items() if v is not None}}, "heal")
            if not interrupted:
                progress.phase("recovering")
                await sampler.settle()
                with trio.move_on_after(RECOVERY_CONVERGE_TIMEOUT):
                    await cluster.wait_converged(timeout=RECOVERY_CONVERGE_TIMEOUT)
                await trio.sleep(opts.recovery_time)
                progress.phase("reading every replica")
                await convergence_pass(cluster, secret, workload, topology.placement_rf(opts), opts.read_repair,
                                       run_dir, "before", network=client_net, now_ns=recorder.now_ns)
                levels = final_read_levels(opts.read_cl)
                progress.phase("final reads at " + ", then ".join(levels))
                for level in levels:
                    await final_reads(cluster, secret, workload, recorder, concurrency, level, client_net)
                # Right after the reads at ALL (their blocking read repair wrote the merged row to
                # every replica), then once every hint is delivered.
                progress.phase("reading every replica after read repair, then after hint delivery")
                await convergence_pass(cluster, secret, workload, topology.placement_rf(opts), opts.read_repair,
                                       run_dir, "read-repair", network=client_net, now_ns=recorder.now_ns)
                repaired: dict[str, Any] | None = None
                if opts.final_repair:
                    progress.phase("repairing every node (anti-entropy) once every hint is delivered")
                    async def first_repaired(node: str, result: dict[str, Any]) -> None:
                        await convergence_pass(cluster, secret, workload, topology.placement_rf(opts), opts.read_repair,
                                               run_dir, "node-repair", network=client_net, now_ns=recorder.now_ns,
                                               extra={"node_repair": {"node": node, **result}})

                    repaired = await full_repair(cluster, secret, client_net, after_first=first_repaired)
                await convergence_pass(cluster, secret, workload, topology.placement_rf(opts), opts.read_repair,
                                       run_dir, "after", drain=True, network=client_net,
                                       now_ns=recorder.now_ns, extra=repaired)
                # The ttl workload's replicas, for checkers/provenance.py (no convergence model).
                await ttl_pass(cluster, secret, workload, topology.placement_rf(opts), run_dir, client_net, recorder.now_ns)
                if not opts.no_restart_check:
                    skip = skip_reason(datapaths.node_storage(opts), deployment, names)
                    progress.phase(f"no restart check: {skip}" if skip else
                                   "killing and restarting every node, then reading every key on each again")
                    await restart_pass(cluster, deployment.db, secret, workload, run_dir, recorder.now_ns, client_net,
                                       skip=skip)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with trio.CancelScope(shield=True):
            try:
                if schedule is not None:
                    await schedule.heal_all()
            finally:
                # Even when healing itself fails: a harness error must not leave nodes running.
                progress.phase("leaving the cluster running" if opts.leave_db_running else "stopping nodes")
                await deployment.teardown(opts.leave_db_running, run_dir)
    test["end_time"] = time.time()
    test["interrupted"] = interrupted
    store.write_json(run_dir / store.TEST_FILE, test)
    progress.phase("checking")
    composed = check_run(run_dir)
    coverage = finish_coverage(run_dir) if opts.coverage else None
    if report:
        progress.phase("writing the report")
        write_report(run_dir)
    ops = recorder.index if recorder else 0
    completed = sum(recorder.counts[t] for t in ("ok", "fail", "info")) if recorder else 0
    return Outcome(run_dir, composed.valid, composed, ops, completed, time.monotonic() - started,
                   completed / workload_s if workload_s else 0.0, interrupted, coverage,
                   started=test["start_time"], seed=seed)


def operator_tools(opts: RunOptions, cluster: Any, secret: str, run_dir: Path, workload: Any,
                   network: Any) -> tuple[Any, Any] | None:
    """The ringctl runner and target of the admin and move nemeses (None in a simulated world,
    whose nodes no process outside it can reach)."""
    if network is not None:
        return None
    from harness.campaign_coverage import prepare_local
    from nemesis.operator import Ringctl, Target

    rc = prepare_local(run_dir) if opts.coverage else None  # ringctl's data joins the nodes'
    return Ringctl(cluster.client_address, secret, rc), Target(KEYSPACE, workload.table, opts.key_count)


async def _watch_interrupt(scope: trio.CancelScope) -> None:
    """The first Ctrl-C (or SIGTERM) ends the workload phase; healing and checking still run."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            log.warning("interrupted: healing faults, stopping nodes, checking what was recorded")
            scope.cancel()
            return


async def create_schema(cluster: Any, secret: str, opts: RunOptions, table: str, network: Any = None) -> None:
    """The test keyspace (SimpleStrategy, the test's RF) and the workload's table."""
    host, port = cluster.client_address(cluster.node_ids()[0])
    async with open_client(host, port, secret=secret, timeout=30, network=network) as c:
        await c.create_keyspace(KEYSPACE, topology.replication(opts), if_not_exists=True)
        await c.create_table(KEYSPACE, table, {"read_repair": opts.read_repair, **datapaths.table_options(opts)},
                             if_not_exists=True)
    # Every node must know the table before clients use it.
    for nid in cluster.node_ids():
        h, p = cluster.client_address(nid)
        with trio.move_on_after(30):
            while True:
                async with open_client(h, p, secret=secret, timeout=5, network=network) as c:
                    desc = await c.request("describe")
                if table in str(desc):
                    break
                await trio.sleep(0.2)


def final_read_levels(read_cl: str) -> list[str]:
    """The final passes: at the campaign's read level (once the cluster is healed and quiet, a
    read there must see every write acknowledged at an overlapping level, whatever membership
    changes happened), then at ALL (what any replica still holds; the fate of every write)."""
    return [read_cl, "ALL"] if read_cl != "ALL" else ["ALL"]


async def final_reads(cluster: Any, secret: str, workload: Any, recorder: Recorder, concurrency: int,
                      level: str = "ALL", network: Any = None) -> None:
    """Read every key at ``level``, retrying while replicas catch up; recorded with ``final: true``.

    The coordinator rotates over the live members, key by key (and each retry moves on), so no
    one node's own replica answers every final read: a coordinator reads its local copy first."""
    ids = cluster.node_ids()  # members now: a node may have left the ring during the run
    # Above every process used so far: a client worker left with ten infos had reached
    # 10 * concurrency + i itself, and its last operation may still be open (cut at the time limit).
    base = max(10 * concurrency, recorder.max_process + 1)
    workers = [Worker(base + j, 10 * concurrency * len(ids), nid,
                      NodeConnection(*cluster.client_address(nid), secret=secret, timeout=OP_TIMEOUT, network=network),
                      random.Random(0)) for j, nid in enumerate(ids)]
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w.conn.session())
        retry_until = trio.current_time() + FINAL_READ_RETRY_BUDGET_S
        for i, op in enumerate(workload.final_ops()):
            for attempt in range(FINAL_READ_ATTEMPTS):
                worker = workers[(i + attempt) % len(workers)]
                done = await worker.perform(workload, op, recorder, level, extra={"final": True}, apply_cl=level)
                if done.type == "ok" or trio.current_time() >= retry_until:
                    break
                await trio.sleep(0.5 * (attempt + 1))


def check_run(run_dir: Path) -> Any:
    """Run every checker on the stored history and write results.json (a ComposedResult)."""
    from checkers.compose import check_all
    from harness.cli import params_from_test

    from checkers.convergence import params_for_run
    from checkers.liveness import params_for_run as liveness_params
    from checkers.movement import params_for_run as movement_params
    from checkers.provenance import params_for_run as provenance_params
    from checkers.restart import params_for_run as restart_params

    params = params_from_test(store.read_json(run_dir / store.TEST_FILE))
    params.update(params_for_run(run_dir))
    params.update(liveness_params(run_dir))
    params.update(movement_params(run_dir))
    params.update(restart_params(run_dir))
    params.update(provenance_params(run_dir))
    composed = check_all(run_dir / store.HISTORY_FILE, params, save_to=run_dir / store.RESULTS_FILE)
    assignments = run_dir / ZK_ASSIGNMENTS_FILE
    if assignments.exists():
        # The ZooKeeper leader's assignment log, collected at teardown (harness/zookeeper.py).
        from checkers.assignments import check_assignments
        from checkers.result import merge_validity

        composed.results["assignments"] = check_assignments(json.loads(assignments.read_text()))
        composed.valid = merge_validity([r.valid for r in composed.results.values()])
        composed.save(run_dir / store.RESULTS_FILE)
    return composed


def finish_coverage(run_dir: Path) -> dict[str, Any] | None:
    """Combine the node processes' coverage data; a failure is logged and shown, never changes the verdict."""
    from harness.campaign_coverage import finish, save_in_process

    try:
        save_in_process(run_dir)  # the simulator's nodes ran in this very process
        return finish(run_dir)
    except Exception as exc:  # noqa: BLE001 - coverage is an extra; the campaign's verdict stands
        log.exception("combining coverage data failed")
        print(f"harness: warning: no coverage figures: {exc}", file=sys.stderr)
        return None


def write_report(run_dir: Path) -> Path | None:
    """Write report.html; a report failure is logged and shown, never changes the verdict."""
    from harness.report.render import write_report as render

    try:
        return render(run_dir)
    except Exception:
        log.exception("writing the report failed")
        print(f"harness: warning: could not write the report; see {run_dir / store.LOG_FILE}", file=sys.stderr)
        return None


def exit_code(valid: bool | str) -> int:
    """Jepsen's exit codes: 0 valid, 1 invalid, 2 unknown."""
    if valid is True:
        return 0
    if valid is False:
        return 1
    return 2


def run_command(opts: RunOptions) -> int:
    """The `harness run` command: validates, runs --test-count campaigns, prints verdicts."""
    from harness import preflight

    opts.validate()
    try:
        preflight.check(opts)
    except preflight.SetupMistake as exc:
        print(f"harness run: error: {exc}", file=sys.stderr)
        return 254
    store_dir = Path(opts.store).resolve()
    lock = store.StoreLock(store_dir)
    try:
        lock.acquire()
    except store.StoreBusy as exc:
        print(f"harness run: error: {exc}", file=sys.stderr)
        return 254
    try:
        return _run_campaigns(opts, store_dir)
    finally:
        lock.release()


def _run_campaigns(opts: RunOptions, store_dir: Path) -> int:
    """The --test-count campaigns of one `harness run`, in a store this process holds."""
    from harness.junit import Running, write_junit

    codes: list[int] = []
    outcomes: list[Outcome] = []
    for i in range(opts.test_count):
        run_dir = store.new_run_dir(store_dir, opts.name())
        if opts.junit_xml:
            # Written before and after each campaign: a killed job still leaves a file that says so.
            write_junit(Path(opts.junit_xml), outcomes, Running(run_dir, time.time(), opts.seed))
        handler = setup_logging(run_dir)
        progress = Progress(sys.stdout)
        try:
            outcome = trio.run(_campaign_with_progress, opts, run_dir, progress)
        except DeployError as exc:
            progress.close()
            print(f"harness: cluster setup failed: {exc}", file=sys.stderr)
            print(f"run directory: {run_dir}", file=sys.stderr)
            return 255
        except Exception as exc:
            from harness.preflight import user_error

            message = user_error(exc)
            if message is None:
                raise
            progress.close()
            print(f"harness run: error: {message}", file=sys.stderr)
            return 254
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
        outcomes.append(outcome)
        if opts.junit_xml:
            write_junit(Path(opts.junit_xml), outcomes)
        print_verdict(outcome)
        codes.append(exit_code(outcome.valid))
        if outcome.interrupted:
            break
        if opts.seed is not None:
            opts.seed += 1
    if 1 in codes:
        return 1
    if 2 in codes:
        return 2
    return 0


async def _campaign_with_progress(opts: RunOptions, run_dir: Path, progress: Progress) -> Outcome:
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.run)
            try:
                return await campaign(opts, run_dir, progress)
            finally:
                nursery.cancel_scope.cancel()
                progress.close()
    except BaseExceptionGroup as group:
        # The progress display never fails, so a group here holds the campaign's one error:
        # raise it as itself so run_command can name it (DeployError → exit 255 with a message).
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def print_verdict(outcome: Outcome) -> None:
    """A readable summary of one campaign."""
    from harness.cli import print_verdict as print_checks

    print_checks(outcome.results, outcome.run_dir / store.HISTORY_FILE, outcome.run_dir / store.RESULTS_FILE)
    report = outcome.run_dir / store.REPORT_FILE
    print(f"{outcome.completed} operations completed, {outcome.ops_per_s:.0f} ops/s during the workload; "
          f"{outcome.duration_s:.1f} s from start to verdict" + (" (interrupted)" if outcome.interrupted else ""))
    if outcome.coverage:
        from harness.campaign_coverage import console_line

        print(console_line(outcome.coverage, outcome.run_dir))
    print(f"run directory: {outcome.run_dir}")
    if report.exists():
        print(f"report: {report}")
