"""ringctl: command-line client for a ringlab node (data, schema and admin operations).

Exit codes: 0 success, 1 the node answered with an error, 3 cannot connect, 254 bad arguments or
no cluster secret given (the harness's code for a user's mistake).

``--node n2`` finds the node's address and the cluster secret in the directory of a local
cluster started with ``harness cluster up`` (its cluster.json), as ``ccm node2 nodetool`` does,
so nobody copies ports and secrets by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import trio

from node.cliparse import OneLineErrors
from node.client import open_client
from node.protocol import RinglabError

# Generous: admin operations such as flush or compact may take a while on a loaded node.
DEFAULT_TIMEOUT = 30.0
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 9042
# Where `harness cluster up` keeps its state unless told otherwise (its --dir default).
DEFAULT_CLUSTER_DIR = "store/cluster"
CLUSTER_FILE = "cluster.json"


# A user's mistake (a bad argument, no secret given) exits as the harness's do, not with
# argparse's 2, which in ringlab's exit codes means "unknown".
USAGE_EXIT = 254


def _usage(message: str) -> SystemExit:
    """A bad argument: the message on stderr and exit code USAGE_EXIT."""
    print(f"ringctl: error: {message}", file=sys.stderr)
    return SystemExit(USAGE_EXIT)


def _value(text: str) -> Any:
    """Command-line values: JSON when it parses (numbers, true, "quoted"), else the raw string."""
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        return text
    return v if isinstance(v, (int, float, str, bool)) else text


def _columns(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise _usage(f"expected column=value, got {p!r}")
        k, _, v = p.partition("=")
        out[k] = _value(v)
    return out


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.2f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return str(n)


def format_status(resp: dict[str, Any]) -> str:
    """``nodetool status``-like table."""
    lines = []
    by_dc: dict[str, list[dict[str, Any]]] = {}
    for n in resp["nodes"]:
        by_dc.setdefault(n["datacenter"], []).append(n)
    for dc, nodes in sorted(by_dc.items()):
        lines.append(f"Datacenter: {dc}")
        lines.append("=" * (12 + len(dc)))
        lines.append("Status=Up/Down")
        lines.append("|/ State=Normal/Leaving/Joining/Moving")
        lines.append(f"--  {'Address':<22} {'Load':<12} {'Tokens':<7} {'Owns':<8} {'Host ID':<16} Rack")
        for n in nodes:
            st = n["state"] + {"NORMAL": "N", "LEAVING": "L", "JOINING": "J", "LEFT": "L"}.get(n["status"], "?")
            owns = f"{100 * n['owns']:.1f}%" if n.get("owns") is not None else "?"
            lines.append(f"{st:<3} {n['address']:<22} {_human_bytes(n.get('load')):<12} {n['tokens']:<7} {owns:<8} {n['node_id']:<16} {n['rack']}")
        lines.append("")
    if resp.get("disk_failure"):
        # disk_failure_policy stopped the asked node: it answers status, and nothing but inspection.
        lines.append(f"Node {resp.get('node')} serves no client or internode traffic: {resp['disk_failure']}")
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> int:
    async with open_client(args.host, args.port, secret=args.secret, timeout=args.timeout,
                           client_secret=args.client_secret) as c:
        cmd = args.command
        if cmd == "put":
            ts = await c.put(args.keyspace, args.table, args.key, _columns(args.columns), consistency=args.consistency, ttl=args.ttl)
            print(f"ok timestamp={ts}")
        elif cmd == "get":
            row = await c.get(args.keyspace, args.table, args.key, columns=args.columns or None, consistency=args.consistency, limit=args.limit)
            if not row:
                print("(no row)")
            for name, (value, ts) in row.items():
                print(f"{name} = {value!r}  (timestamp {ts})")
        elif cmd == "delete":
            ts = await c.delete(args.keyspace, args.table, args.key, columns=args.columns or None, consistency=args.consistency)
            print(f"ok timestamp={ts}")
        elif cmd == "status":
            print(format_status(await c.admin("status", keyspace=args.keyspace)))
        elif cmd == "ring":
            resp = await c.admin("ring")
            print(f"Partitioner: {resp['partitioner']}")
            for tok, owner, state in resp["tokens"]:
                print(f"{owner:<16} {state}  {tok}")
        elif cmd == "getendpoints":
            resp = await c.admin("getendpoints", keyspace=args.keyspace, key=args.key)
            print(f"token {resp['token']}")
            for e in resp["endpoints"]:
                print(e)
        elif cmd == "gossipinfo":
            print(json.dumps((await c.admin("gossipinfo"))["nodes"], indent=2, default=str))
        elif cmd in ("flush", "compact"):
            print(json.dumps(await c.admin(cmd, keyspace=args.keyspace, table=args.table), default=str))
        elif cmd == "snapshot":
            resp = await c.admin("snapshot", tag=args.tag)
            print(f"snapshot {resp['tag']} at {resp['path']}")
        elif cmd == "listsnapshots":
            snaps = (await c.admin("listsnapshots"))["snapshots"]
            if not snaps:
                print("There are no snapshots")
            for snap in snaps:
                print(f"{snap['tag']:<40} {snap['files']:>6} files  {_human_bytes(snap['bytes']):>12} "
                      f"(true size {_human_bytes(snap['true_bytes'])})")
        elif cmd == "clearsnapshot":
            if (args.tag is None) == (not args.all):
                raise _usage("clearsnapshot needs -t TAG or --all")
            resp = await c.admin("clearsnapshot", tag=args.tag, all=args.all or None)
            print(f"cleared {len(resp['cleared'])} snapshots: {' '.join(resp['cleared'])}")
        elif cmd == "drain":
            await c.admin("drain")
            print("draining")
        elif cmd == "clock":
            fields: dict[str, Any] = {"action": args.action}
            if args.action == "set":
                fields.update(offset_us=args.offset_us, rate=args.rate)
            elif args.action == "bump":
                fields.update(delta_us=args.delta_us)
            resp = await c.admin("clock", **fields)
            print(f"wall_us={resp['wall_us']} offset_us={resp['offset_us']} rate={resp['rate']}")
        elif cmd == "faults":
            changes = {k: v.lower() in ("1", "true", "on", "yes") for k, v in (_split_eq(s) for s in args.set)}
            print(json.dumps((await c.admin("faults", set=changes or None))["faults"], indent=2))
        elif cmd == "route":
            fields = {"node": args.node, "address": args.address} if args.node else {}
            for peer, addr in sorted((await c.admin("route", **fields))["routes"].items()):
                print(f"{peer} {addr}")
        elif cmd == "create-keyspace":
            if args.nts:
                rep: dict[str, Any] = {"class": "NetworkTopologyStrategy", **{k: int(v) for k, v in (_split_eq(s) for s in args.nts)}}
            else:
                rep = {"class": "SimpleStrategy", "replication_factor": args.rf}
            resp = await c.create_keyspace(args.name, rep, if_not_exists=args.if_not_exists)
            print(f"schema version {resp['version']} (agreed: {', '.join(resp['agreed'])})")
        elif cmd == "create-table":
            opts = {k: _value(v) for k, v in (_split_eq(s) for s in args.option)}
            resp = await c.create_table(args.keyspace, args.name, opts, if_not_exists=args.if_not_exists)
            print(f"schema version {resp['version']} (agreed: {', '.join(resp['agreed'])})")
        elif cmd == "describe":
            print(json.dumps(await c.request("describe"), indent=2, default=str))
        elif cmd in ("join", "decommission", "netstats"):
            print(json.dumps(await c.admin(cmd), indent=2, default=str))
        elif cmd == "removenode":
            print(json.dumps(await c.admin("removenode", node=args.node), indent=2, default=str))
        elif cmd == "cleanup":
            print(json.dumps(await c.admin("cleanup", keyspace=args.keyspace), indent=2, default=str))
        elif cmd == "move":
            print(json.dumps(await c.admin("move", tokens=args.tokens), indent=2, default=str))
        elif cmd == "repair":
            print(json.dumps(await c.admin("repair", keyspace=args.keyspace, range=args.range), indent=2, default=str))
        elif cmd == "leader":
            print(json.dumps(await c.admin("leader", log=args.log), indent=2, default=str))
    return 0


def _split_eq(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise _usage(f"expected name=value, got {text!r}")
    k, _, v = text.partition("=")
    return k, v


class _Parser(OneLineErrors):
    """argparse with one-line errors: the usage block (every command) buried the line that matters."""

    usage_exit = USAGE_EXIT


def _seconds(text: str) -> float:
    """A positive number of seconds for argparse (its error names the option)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (all subcommands)."""
    p = _Parser(prog="ringctl", description="Talk to a ringlab node.")
    p.add_argument("--host", default=os.environ.get("RINGCTL_HOST"), help=f"node address (or $RINGCTL_HOST; default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=_env_port(), help=f"client port (or $RINGCTL_PORT; default {DEFAULT_PORT})")
    p.add_argument("--secret", default=os.environ.get("RINGLAB_SECRET"), help="cluster secret (or $RINGLAB_SECRET; "
                   "read from the cluster directory for its nodes)")
    p.add_argument("--client-secret", default=os.environ.get("RINGLAB_CLIENT_SECRET"),
                   help="the nodes' client_secret, for put/get/delete when they set one (or $RINGLAB_CLIENT_SECRET)")
    p.add_argument("--node", dest="cluster_node", metavar="NAME", help="a node of the local cluster in --cluster-dir (n1, n2, ...): its address "
                   "and the cluster secret come from there")
    p.add_argument("--cluster-dir", default=os.environ.get("RINGLAB_CLUSTER_DIR", DEFAULT_CLUSTER_DIR), metavar="DIR",
                   help=f"where `harness cluster up` keeps the cluster (or $RINGLAB_CLUSTER_DIR; default {DEFAULT_CLUSTER_DIR})")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, help=f"seconds per request (default {DEFAULT_TIMEOUT:g})")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def data(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("keyspace")
        sp.add_argument("table")
        sp.add_argument("key")
        sp.add_argument("-c", "--consistency", default="ONE")
        return sp

    sp = data("put", "write columns: put ks t key col=value ...")
    sp.add_argument("columns", nargs="+")
    sp.add_argument("--ttl", type=int)
    sp = data("get", "read a row (optionally named columns)")
    sp.add_argument("columns", nargs="*")
    sp.add_argument("--limit", type=int)
    sp = data("delete", "delete a row or named columns")
    sp.add_argument("columns", nargs="*")
    sp = sub.add_parser("status", help="nodetool-status-like view of the cluster")
    sp.add_argument("--keyspace", help="effective ownership under this keyspace's replication")
    sub.add_parser("ring", help="every token and its owner")
    sp = sub.add_parser("getendpoints", help="replicas of a key")
    sp.add_argument("keyspace")
    sp.add_argument("key")
    sub.add_parser("gossipinfo", help="gossip state of every node")
    for name in ("flush", "compact"):
        sp = sub.add_parser(name, help=f"{name} tables on this node")
        sp.add_argument("keyspace", nargs="?")
        sp.add_argument("table", nargs="?")
    sp = sub.add_parser("snapshot", help="snapshot every table on this node")
    sp.add_argument("--tag")
    sub.add_parser("listsnapshots", help="this node's snapshots and the disk they hold")
    sp = sub.add_parser("clearsnapshot", help="delete one snapshot (-t TAG) or all of them (--all)")
    sp.add_argument("-t", "--tag")
    sp.add_argument("--all", action="store_true")
    sub.add_parser("drain", help="flush and stop the node")
    sp = sub.add_parser("clock", help="this node's clock: get, set --offset-us/--rate, bump --delta-us, reset")
    sp.add_argument("action", choices=["get", "set", "bump", "reset"], nargs="?", default="get")
    sp.add_argument("--offset-us", type=int)
    sp.add_argument("--rate", type=float)
    sp.add_argument("--delta-us", type=int, default=0)
    sp = sub.add_parser("faults", help="show or set validation fault switches: faults name=true ...")
    sp.add_argument("set", nargs="*")
    sp = sub.add_parser("route", help="list this node's routes to peers, or reach a peer through host:port (a fault proxy)")
    sp.add_argument("node", nargs="?")
    sp.add_argument("address", nargs="?", metavar="HOST:PORT")
    sp = sub.add_parser("create-keyspace", help="create a keyspace")
    sp.add_argument("name")
    sp.add_argument("--rf", type=int, default=3, help="SimpleStrategy replication factor")
    sp.add_argument("--nts", nargs="+", metavar="DC=RF", help="NetworkTopologyStrategy factors instead")
    sp.add_argument("--if-not-exists", action="store_true")
    sp = sub.add_parser("create-table", help="create a table")
    sp.add_argument("keyspace")
    sp.add_argument("name")
    sp.add_argument("-o", "--option", nargs="*", default=[], metavar="NAME=VALUE")
    sp.add_argument("--if-not-exists", action="store_true")
    sub.add_parser("describe", help="the schema")
    sub.add_parser("join", help="bootstrap this JOINING node: stream its ranges, then NORMAL")
    sub.add_parser("decommission", help="stream this node's ranges to their new replicas, leave the ring, stop")
    sp = sub.add_parser("removenode", help="re-replicate a dead node's ranges from the survivors and drop it")
    sp.add_argument("node")
    sp = sub.add_parser("cleanup", help="drop data of ranges this node no longer replicates")
    sp.add_argument("keyspace", nargs="?")
    sp = sub.add_parser("move", help="move this node to new tokens (streaming what it gains)")
    sp.add_argument("tokens", nargs="+")
    sp = sub.add_parser("repair", help="Merkle-tree anti-entropy repair of the ranges this node replicates")
    sp.add_argument("keyspace", nargs="?")
    sp.add_argument("--range", help="only this token range, as LEFT:RIGHT ((left, right])")
    sub.add_parser("netstats", help="membership operation, streaming and repair counters")
    sp = sub.add_parser("leader", help="the ZooKeeper leader, its epoch and the range map (coordination = zookeeper)")
    sp.add_argument("--log", action="store_true", help="also print the assignment log from ZooKeeper")
    return p


def _check(args: argparse.Namespace) -> None:
    """Refuse malformed arguments before connecting (exit USAGE_EXIT, as argparse's own errors here)."""
    if args.command == "put":
        _columns(args.columns)
    for attr in ("set", "nts", "option"):
        for text in getattr(args, attr, None) or []:
            _split_eq(text)
    if args.command == "route" and (args.node is None) != (args.address is None):
        raise _usage("route: give both a node id and host:port, or neither to list routes")


def _env_port() -> int | None:
    text = os.environ.get("RINGCTL_PORT")
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise _usage(f"$RINGCTL_PORT must be a port number, got {text!r}") from None


def _cluster_state(cluster_dir: str) -> dict[str, Any] | None:
    """The cluster.json of a `harness cluster up` directory (None when there is none)."""
    path = os.path.join(cluster_dir, CLUSTER_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise _usage(f"cannot read {path}: {exc}") from None
    if not isinstance(state, dict) or not isinstance(state.get("nodes"), dict):
        raise _usage(f"{path} does not describe a cluster (no 'nodes')")
    return state


def resolve_target(args: argparse.Namespace) -> None:
    """Fill host, port and secret: flags and environment first, then the cluster directory
    (``--node``, or the node at the given port), then the defaults."""
    state = _cluster_state(args.cluster_dir) if (args.cluster_node or args.secret is None) else None
    if args.cluster_node:
        if state is None:
            raise _usage(f"--node {args.cluster_node}: no cluster in {args.cluster_dir} (no {CLUSTER_FILE}; start one with "
                         f"`harness cluster up`, or give --cluster-dir)")
        node = state["nodes"].get(args.cluster_node)
        if not isinstance(node, dict) or ":" not in str(node.get("client", "")):
            raise _usage(f"--node {args.cluster_node}: not a node of the cluster in {args.cluster_dir} "
                         f"(nodes: {', '.join(sorted(state['nodes']))})")
        host, _, port = str(node["client"]).rpartition(":")
        args.host = args.host or host
        args.port = args.port if args.port is not None else int(port)
    args.host = args.host or DEFAULT_HOST
    args.port = args.port if args.port is not None else DEFAULT_PORT
    if args.secret is None and state is not None:
        here = f"{args.host}:{args.port}"
        if any(isinstance(n, dict) and n.get("client") == here for n in state["nodes"].values()):
            args.secret = state.get("secret")


def _single(exc: BaseException) -> BaseException:
    """The one error inside (nested) exception groups of one member: the client's nursery wraps
    whatever the command raised."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _join_range_values(argv: list[str]) -> list[str]:
    """``--range -123:456`` as ``--range=-123:456``: argparse takes a value that starts with "-"
    and is not a plain number for an option, and a range's left token is often negative."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--range" and i + 1 < len(argv) and argv[i + 1].startswith("-") and ":" in argv[i + 1]:
            out.append(f"--range={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ringctl``."""
    try:
        args = build_parser().parse_args(_join_range_values(sys.argv[1:] if argv is None else argv))
        _check(args)
        resolve_target(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return trio.run(_run, args)
    except BaseException as group:  # noqa: BLE001 - every error is named below or re-raised
        exc = _single(group)
        if isinstance(exc, BrokenPipeError):
            # The reader went away (`ringctl ring | head`): stop quietly, as a filter should. Point
            # stdout at devnull so the interpreter's final flush does not complain again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if isinstance(exc, RinglabError):
            hint = ""
            if exc.name == "Unauthorized" and args.secret is None:
                hint = (f" (no secret given: use --secret or $RINGLAB_SECRET, or --node NAME for a cluster "
                        f"started with `harness cluster up`)")
            print(f"ringctl: {exc.name}: {exc.message}{hint}", file=sys.stderr)
            return USAGE_EXIT if hint else 1
        if isinstance(exc, OSError):
            print(f"ringctl: cannot reach {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 3
        if isinstance(exc, KeyboardInterrupt):
            print("ringctl: interrupted", file=sys.stderr)
            return 130
        raise


if __name__ == "__main__":
    sys.exit(main())
