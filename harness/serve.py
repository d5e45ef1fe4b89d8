"""`harness serve`: a results browser over the store directory (Trio + h11).

Trio and h11 rather than http.server in a thread: the rest of the harness (and the fault proxy)
is Trio with h11's sans-IO HTTP, so the server shares its structured concurrency (one nursery,
Ctrl-C cancels everything, nothing left behind), tests can start it in their own nursery on
port 0, and a slow zip download never blocks the listing. Only files under the store directory
are ever served: every path is resolved (symlinks included) and checked to be inside it.
"""

from __future__ import annotations

import html
import json
import mimetypes
import signal
import sys
import tempfile
import time
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any

import h11
import trio

from harness import store

DEFAULT_HOST = "127.0.0.1"  # never listen beyond loopback unless asked
DEFAULT_PORT = 8080
# Bytes per read from the socket and per chunk sent of a file: large enough for few syscalls on
# a 20 MB report, small enough to keep memory flat while many downloads run.
CHUNK = 64 * 1024
# A connection that sends nothing for this long is closed (a browser keeps idle ones open).
IDLE_TIMEOUT_S = 60.0
# Request heads larger than this are refused (h11's own default is 16 KiB; ours are tiny URLs).
MAX_HEAD_BYTES = 16 * 1024
# Zips are built in a temporary file that stays in memory up to this size, then spills to disk.
ZIP_SPOOL_BYTES = 8 * 1024 * 1024
SERVER_NAME = b"ringlab-harness-serve"
VERDICTS = ("valid", "invalid", "unknown", "incomplete")


class HTTPError(Exception):
    """A request that gets an error status; the message is shown to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def serve_command(store_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """`harness serve`: browse the runs of a store directory until Ctrl-C; 254 for a bad store."""
    root = Path(store_dir)
    if not root.is_dir():
        print(f"harness serve: {root}: no such store directory", file=sys.stderr)
        return 254
    if not 0 <= port <= 65535:
        print(f"harness serve: --port must be 0-65535 (0: any free port), got {port}", file=sys.stderr)
        return 254
    try:
        trio.run(_serve_until_signal, root, host, port)
    except KeyboardInterrupt:  # a Ctrl-C before the signal receiver is up
        pass
    except OSError as exc:
        # The user's address: a port in use, one that needs root, an address not on this machine.
        print(f"harness serve: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 254
    print("harness serve: stopped", file=sys.stderr)
    return 0


async def _serve_until_signal(root: Path, host: str, port: int) -> None:
    """Serve until Ctrl-C or SIGTERM, which end the server cleanly (no exception group)."""
    app = ResultsApp(root)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        # Listening outside any nursery: a port in use is a plain OSError, not a group.
        listeners, _ = await _listen(app, host, port, quiet=False)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, app.handle_connection, listeners)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


async def serve(store_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED, quiet: bool = False) -> None:
    """Serve the results browser; reports the bound port through ``task_status``."""
    app = ResultsApp(Path(store_dir))
    listeners, bound = await _listen(app, host, port, quiet)
    task_status.started(bound)
    await trio.serve_listeners(app.handle_connection, listeners)


async def _listen(app: ResultsApp, host: str, port: int, quiet: bool) -> tuple[list[trio.SocketListener], int]:
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    if not quiet:
        print(f"harness serve: http://{host}:{bound}/ (store {app.root})", flush=True)
    return listeners, bound


class ResultsApp:
    """The routes: index, run files and reports, zips, and a JSON listing."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    # -------------------------------------------------------------- connection handling

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        """Serve requests on one connection until it closes or idles out."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            while True:
                with trio.move_on_after(IDLE_TIMEOUT_S):
                    event = await self._next_event(conn, stream)
                    if event is None:
                        return
                    await self._respond(conn, stream, event)
                    if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                        return
                    try:
                        conn.start_next_cycle()
                    except h11.LocalProtocolError:
                        return
                    continue
                return  # idle timeout
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            return
        except h11.RemoteProtocolError as exc:
            await self._send_error_quietly(conn, stream, exc.error_status_hint, f"bad request: {exc}")
        finally:
            await stream.aclose()

    async def _next_event(self, conn: h11.Connection, stream: trio.SocketStream) -> h11.Request | None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                # b"" at EOF tells h11 the peer closed: it answers ConnectionClosed or a protocol error.
                conn.receive_data(await stream.receive_some(CHUNK))
                continue
            if isinstance(event, h11.Request):
                # Drain any body (none expected): the response comes after EndOfMessage.
                while True:
                    nxt = conn.next_event()
                    if nxt is h11.NEED_DATA:
                        data = await stream.receive_some(CHUNK)
                        if not data:
                            return None
                        conn.receive_data(data)
                        continue
                    if isinstance(nxt, h11.EndOfMessage):
                        return event
            if isinstance(event, h11.ConnectionClosed):
                return None

    async def _send_error_quietly(self, conn: h11.Connection, stream: trio.SocketStream, status: int, msg: str) -> None:
        try:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._send(conn, stream, status, msg.encode(), "text/plain; charset=utf-8")
        except Exception:
            pass  # the client is gone or broke the protocol; nothing more to tell it

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, status: int, body: bytes,
                    ctype: str, extra: list[tuple[str, str]] | None = None, head_only: bool = False) -> None:
        headers = [("content-type", ctype), ("content-length", str(len(body))), ("server", SERVER_NAME.decode()),
                   ("x-content-type-options", "nosniff"), ("cache-control", "no-store")] + (extra or [])
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
        if body and not head_only:
            await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))

    async def _send_file(self, conn: h11.Connection, stream: trio.SocketStream, f: Any, size: int, ctype: str,
                         extra: list[tuple[str, str]] | None = None, head_only: bool = False) -> None:
        headers = [("content-type", ctype), ("content-length", str(size)), ("server", SERVER_NAME.decode()),
                   ("x-content-type-options", "nosniff"), ("cache-control", "no-store")] + (extra or [])
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
        if not head_only:
            while True:
                chunk = await trio.to_thread.run_sync(f.read, CHUNK)
                if not chunk:
                    break
                await stream.send_all(conn.send(h11.Data(data=chunk)))
        await stream.send_all(conn.send(h11.EndOfMessage()))

    async def _respond(self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request) -> None:
        method = req.method.decode("ascii", "replace")
        target = req.target.decode("ascii", "replace")
        head_only = method == "HEAD"
        try:
            if method not in ("GET", "HEAD"):
                raise HTTPError(405, f"method {method} not allowed: this server only reads")
            url = urllib.parse.urlsplit(target)
            path = urllib.parse.unquote(url.path)
            query = urllib.parse.parse_qs(url.query)
            if "\0" in path:
                raise HTTPError(400, "NUL in path")
            if path == "/":
                body = self.index_page(query).encode()
                await self._send(conn, stream, 200, body, "text/html; charset=utf-8", head_only=head_only)
            elif path == "/api/runs":
                body = json.dumps(self.list_runs(query), indent=1).encode()
                await self._send(conn, stream, 200, body, "application/json", head_only=head_only)
            elif path.startswith("/zip/") and path.endswith(".zip"):
                run = self.run_dir(path[len("/zip/"):-len(".zip")])
                spool = await trio.to_thread.run_sync(self.zip_run, run)
                try:
                    size = spool.seek(0, 2)
                    spool.seek(0)
                    name = f"{run.parent.name}-{run.name}.zip"
                    await self._send_file(conn, stream, spool, size, "application/zip",
                                          [("content-disposition", f'attachment; filename="{name}"')], head_only)
                finally:
                    spool.close()
            elif path.startswith("/runs/") and self.inside(path[len("/runs/"):]).is_dir():
                if not path.endswith("/"):  # relative links in the listing need the slash
                    await self._send(conn, stream, 301, b"", "text/plain; charset=utf-8",
                                     [("location", urllib.parse.quote(path) + "/")], head_only)
                else:
                    body = self.dir_page(path[len("/runs/"):]).encode()
                    await self._send(conn, stream, 200, body, "text/html; charset=utf-8", head_only=head_only)
            elif path.startswith("/runs/"):
                file = await self.run_file(path[len("/runs/"):])
                ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                if file.suffix in (".log", ".jsonl", ".edn", ".toml"):
                    ctype = "text/plain"  # shown in the browser, never interpreted
                if ctype.startswith("text/") or ctype == "application/json":
                    ctype += "; charset=utf-8"
                with open(file, "rb") as f:
                    size = file.stat().st_size
                    await self._send_file(conn, stream, f, size, ctype, head_only=head_only)
            else:
                raise HTTPError(404, f"no such page: {path}")
        except HTTPError as exc:
            await self._send(conn, stream, exc.status, f"{exc.status}: {exc}\n".encode(), "text/plain; charset=utf-8",
                             head_only=head_only)
        except OSError as exc:
            await self._send(conn, stream, 500, f"500: {exc}\n".encode(), "text/plain; charset=utf-8", head_only=head_only)

    # -------------------------------------------------------------- store access

    def inside(self, rel: str) -> Path:
        """The store path for a relative URL path; 404 for anything resolving outside the store."""
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            raise HTTPError(404, "no such file")
        p = self.root.joinpath(*parts).resolve()
        if p != self.root and not p.is_relative_to(self.root):
            raise HTTPError(404, "no such file")
        return p

    def run_dir(self, rel: str) -> Path:
        """A run directory (test/stamp) inside the store."""
        p = self.inside(rel)
        if not (p / store.TEST_FILE).is_file() and not (p / store.HISTORY_FILE).is_file():
            raise HTTPError(404, f"no run at {rel}")
        return p

    async def run_file(self, rel: str) -> Path:
        """A file of a run; report.html is rendered first when the run has none yet."""
        p = self.inside(rel)
        if p.name == store.REPORT_FILE and not p.exists() and (p.parent / store.HISTORY_FILE).exists():
            from harness.report import ReportError, write_report

            try:
                await trio.to_thread.run_sync(write_report, p.parent)
            except (ReportError, ValueError) as exc:
                raise HTTPError(500, f"cannot render the report: {exc}") from None
        if not p.is_file():
            raise HTTPError(404, f"no such file: {rel}")
        return p

    def dir_page(self, rel: str) -> str:
        """A directory of the store (a run, nodes/, a node's logs) as a list of links."""
        p = self.inside(rel)
        e = html.escape
        here = str(p.relative_to(self.root))
        rows = []
        if p != self.root:
            rows.append('<li><a href="../">../</a></li>')
        for child in sorted(p.iterdir(), key=lambda c: (not c.is_dir(), c.name)):
            if child.is_symlink() and not child.resolve().is_relative_to(self.root):
                continue  # never point outside the store
            name = child.name + ("/" if child.is_dir() else "")
            size = "" if child.is_dir() else f" <small>{_size(child)}</small>"
            rows.append(f'<li><a href="{urllib.parse.quote(name)}">{e(name)}</a>{size}</li>')
        return DIR_TEMPLATE.format(here=e(here), rows="\n".join(rows))

    def zip_run(self, run: Path) -> Any:
        """Every regular file of a run directory inside the store, as a zip in a spooled temp file."""
        spool = tempfile.SpooledTemporaryFile(max_size=ZIP_SPOOL_BYTES)
        base = f"{run.parent.name}-{run.name}"
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(run.rglob("*")):
                if f.is_symlink() or not f.is_file():
                    continue  # a symlink could point outside the store
                z.write(f, f"{base}/{f.relative_to(run)}")
        return spool

    def list_runs(self, query: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """Runs newest first, filtered by ?verdict= and ?name= (substring of the test name)."""
        query = query or {}
        want_verdict = (query.get("verdict") or [""])[0]
        want_name = (query.get("name") or [""])[0].lower()
        out = []
        found = [p.parent for p in self.root.glob(f"*/*/{store.TEST_FILE}") if not p.parent.is_symlink()]
        for run in sorted(found, key=lambda p: (p.name, p.parent.name), reverse=True):
            info = describe_run(run, self.root)
            if want_verdict and info["verdict"] != want_verdict:
                continue
            if want_name and want_name not in info["name"].lower():
                continue
            out.append(info)
        return out

    def index_page(self, query: dict[str, list[str]]) -> str:
        """The listing as HTML: every value escaped."""
        runs = self.list_runs(query)
        e = html.escape
        verdict = (query.get("verdict") or [""])[0]
        name = (query.get("name") or [""])[0]
        options = "".join(f'<option value="{v}"{" selected" if v == verdict else ""}>{v}</option>' for v in VERDICTS)
        rows = []
        for r in runs:
            q = urllib.parse.quote(r["path"])
            rows.append(
                f'<tr class="run {e(r["verdict"])}"><td><span class="v {e(r["verdict"])}">{e(r["verdict"])}</span></td>'
                f'<td>{e(r["name"])}</td><td>{e(r["run"])}</td><td>{e(r["params"])}'
                + (f'<div class="why">unknown: {e(r["why"])}</div>' if r.get("why") else "") + '</td>'
                f'<td class="num">{e(r["duration"])}</td>'
                f'<td><a class="report" href="/runs/{q}/report.html">report</a> · '
                f'<a class="zip" href="/zip/{q}.zip">zip</a> · <a href="/runs/{q}/results.json">results</a> · '
                f'<a href="/runs/{q}/history.jsonl">history</a> · <a class="files" href="/runs/{q}/">files</a></td></tr>')
        body = "\n".join(rows) or '<tr><td colspan="6" class="empty">no runs match</td></tr>'
        return INDEX_TEMPLATE.format(root=e(str(self.root)), options=options, name=e(name), rows=body, count=len(runs))


def describe_run(run: Path, root: Path) -> dict[str, Any]:
    """Name, verdict, parameters and duration of one run, from its stored files."""
    test = _load(run / store.TEST_FILE, root) or {}
    results = _load(run / store.RESULTS_FILE, root)
    if isinstance(results, dict) and results.get("valid") in (True, False, "unknown"):
        verdict = {True: "valid", False: "invalid", "unknown": "unknown"}[results["valid"]]
    else:
        verdict = "incomplete"  # no results.json: interrupted or still running
    opts = dict(test.get("options")) if isinstance(test.get("options"), dict) else {}
    if opts.get("nodes") is None and isinstance(test.get("params"), dict):
        opts["nodes"] = test["params"].get("nodes")  # the count that started (--nodes not given)
    keys = ("workload", "nemesis", "nodes", "read_cl", "write_cl", "replication_factor", "time_limit", "rate")
    params = " ".join(f"{k}={opts[k]}" for k in keys if opts.get(k) not in (None, ""))
    if test.get("seed") is not None:
        params += f" seed={test['seed']}"
    if opts.get("deploy") not in (None, "local"):
        params += f" deploy={opts['deploy']}"
    if opts.get("validation_faults"):
        # A deliberately broken store: say so, it explains an invalid verdict at a glance.
        params += " fault=" + ",".join(map(str, opts["validation_faults"]))
    start, end = test.get("start_time"), test.get("end_time")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        duration = f"{end - start:.1f} s"
    elif isinstance(opts.get("time_limit"), (int, float)):
        duration = f"~{opts['time_limit']} s"
    else:
        duration = "?"
    return {
        "name": str(test.get("name") or run.parent.name),
        "run": run.name,
        "path": str(run.relative_to(root)),
        "verdict": verdict,
        "params": params,
        "duration": duration,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)) if isinstance(start, (int, float)) else "",
        "has_report": (run / store.REPORT_FILE).exists(),
        "why": _why_unknown(results) if verdict == "unknown" else "",
    }


def _why_unknown(results: dict[str, Any]) -> str:
    """The reasons the unknown checkers of a results.json give (an interruption, a nemesis never
    injected), joined."""
    checkers = results.get("checkers")
    reasons = [str(r["details"]["reason"]) for r in (checkers.values() if isinstance(checkers, dict) else [])
               if isinstance(r, dict) and r.get("valid") == "unknown" and isinstance(r.get("details"), dict)
               and r["details"].get("reason")]
    return "; ".join(dict.fromkeys(reasons))


def _size(path: Path) -> str:
    try:
        n = path.stat().st_size
    except OSError:
        return "?"
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _load(path: Path, root: Path) -> Any:
    if not path.resolve().is_relative_to(root.resolve()):
        return None  # a symlink out of the store is never read
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


INDEX_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>ringlab runs</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f5f6f8; color: #1d232a; }}
header {{ background: #1d232a; color: #fff; padding: 8px 16px; }} h1 {{ font-size: 18px; margin: 0; }}
main {{ padding: 10px 16px; }} table {{ border-collapse: collapse; background: #fff; width: 100%; }}
th, td {{ text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6ea; }} td.num {{ text-align: right; }}
.v {{ color: #fff; border-radius: 9px; padding: 1px 8px; font-weight: 600; font-size: 12px; }}
.v.valid {{ background: #2e9d4f; }} .v.invalid {{ background: #d0312d; }} .v.unknown {{ background: #e39b00; }}
.v.incomplete {{ background: #8a8f98; }} .why {{ color: #8a5a00; font-size: 12px; }} tr.invalid td {{ background: #fdf3f3; }} tr.unknown td {{ background: #fffaf0; }}
form {{ margin: 8px 0; display: flex; gap: 10px; align-items: center; }} .empty {{ color: #667; font-style: italic; }}
</style></head><body><header><h1>ringlab runs</h1><small>{root}</small></header><main>
<form method="get" action="/"><label>verdict <select name="verdict"><option value="">any</option>{options}</select></label>
<label>test name <input type="search" name="name" value="{name}"></label><button type="submit">Filter</button>
<span>{count} run(s), newest first</span></form>
<table><thead><tr><th>verdict</th><th>test</th><th>run</th><th>parameters</th><th>duration</th><th></th></tr></thead>
<tbody>
{rows}
</tbody></table></main></body></html>
"""

DIR_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{here} · ringlab runs</title>
<style>body {{ font: 14px/1.5 system-ui, sans-serif; margin: 16px; }} small {{ color: #667; }}</style></head>
<body><p><a href="/">all runs</a></p><h1>{here}/</h1><ul>
{rows}
</ul></body></html>
"""
