"""`harness serve` over a real loopback socket: listing, filters, reports, zips, and containment."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import trio

from harness import store
from harness.report.sample import NODES, make_run
from harness.serve import DEFAULT_HOST, serve, serve_command


async def raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; returns status, headers, body."""
    s = await trio.open_tcp_stream("127.0.0.1", port)
    async with s:
        await s.send_all(request)
        data = b""
        with trio.fail_after(10):
            while chunk := await s.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, headers, body


async def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    return await raw(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    make_run(root, "valid")
    make_run(root, "linearizability")
    run = make_run(root, "clock")
    # an interrupted run: no results.json yet, and a hostile test name
    bad = root / "x<script>" / "20200101T000000"
    bad.mkdir(parents=True)
    store.write_json(bad / store.TEST_FILE, {"name": "<script>alert(1)</script>", "options": {"workload": "sets"}})
    (bad / store.HISTORY_FILE).write_text("")
    (tmp_path / "secret.txt").write_text("outside the store")
    os.symlink(tmp_path / "secret.txt", run / "leak.txt")
    return root


async def test_listing_filters_and_escaping(store_dir: Path, nursery: trio.Nursery) -> None:
    port = await nursery.start(serve, store_dir, "127.0.0.1", 0)
    status, headers, body = await get(port, "/api/runs")
    runs = json.loads(body)
    assert status == 200 and len(runs) == 4
    # newest first: the three samples share a second, the 2020 run is last
    assert runs[-1]["run"] == "20200101T000000" and runs[-1]["verdict"] == "incomplete"
    verdicts = {r["name"]: r["verdict"] for r in runs}
    assert verdicts["sample-valid"] == "valid" and verdicts["sample-linearizability"] == "invalid"
    assert verdicts["sample-clock"] == "invalid"
    assert "workload=register" in runs[0]["params"] and "seed=7" in runs[0]["params"]
    # --nodes not given (None in options): the count that started, from params
    assert f"nodes={len(NODES)}" in runs[0]["params"]
    _, _, body = await get(port, "/api/runs?verdict=invalid")
    assert {r["name"] for r in json.loads(body)} == {"sample-linearizability", "sample-clock"}
    _, _, body = await get(port, "/api/runs?name=CLOCK")
    assert [r["name"] for r in json.loads(body)] == ["sample-clock"]
    status, headers, page = await get(port, "/?verdict=valid")
    text = page.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert text.count('<tr class="run') == 1 and 'class="v valid"' in text
    _, _, page = await get(port, "/")
    text = page.decode()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.index("sample-") < text.index("&lt;script&gt;alert")  # newest first


async def test_report_opens_and_is_rendered_when_missing(store_dir: Path, nursery: trio.Nursery) -> None:
    port = await nursery.start(serve, store_dir, "127.0.0.1", 0)
    run = next(store_dir.glob("sample-valid/*/"))
    assert not (run / store.REPORT_FILE).exists()
    status, headers, body = await get(port, f"/runs/sample-valid/{run.name}/report.html")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b'id="report-data"' in body and (run / store.REPORT_FILE).exists()
    status, headers, body = await get(port, f"/runs/sample-valid/{run.name}/history.jsonl")
    assert status == 200 and headers["content-type"].startswith("text/plain") and body.count(b"\n") > 1000
    status, _, _ = await raw(port, f"HEAD /runs/sample-valid/{run.name}/report.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status == 200


async def test_zip_download(store_dir: Path, nursery: trio.Nursery) -> None:
    port = await nursery.start(serve, store_dir, "127.0.0.1", 0)
    run = next(store_dir.glob("sample-clock/*/"))
    status, headers, body = await get(port, f"/zip/sample-clock/{run.name}.zip")
    assert status == 200 and headers["content-type"] == "application/zip"
    assert f'filename="sample-clock-{run.name}.zip"' in headers["content-disposition"]
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    base = f"sample-clock-{run.name}/"
    assert {base + "test.json", base + "history.jsonl", base + "results.json", base + "nodes/n1/data/node.log"} <= set(names)
    assert base + "leak.txt" not in names  # a symlink out of the store is not followed


@pytest.mark.parametrize("path", [
    "/runs/../secret.txt", "/runs/%2e%2e/secret.txt", "/runs/sample-clock/../../secret.txt",
    "/runs//etc/passwd", "/runs/%2Fetc%2Fpasswd", "/zip/..%2F..%2Fstore.zip", "/zip/sample-clock.zip", "/nope",
])
async def test_nothing_outside_the_store(store_dir: Path, nursery: trio.Nursery, path: str) -> None:
    port = await nursery.start(serve, store_dir, "127.0.0.1", 0)
    status, _, body = await get(port, path)
    assert status == 404 and b"outside the store" not in body and b"root:" not in body


async def test_symlink_out_of_the_store_is_refused(store_dir: Path, nursery: trio.Nursery) -> None:
    port = await nursery.start(serve, store_dir, "127.0.0.1", 0)
    run = next(store_dir.glob("sample-clock/*/"))
    status, _, body = await get(port, f"/runs/sample-clock/{run.name}/leak.txt")
    assert status == 404 and b"outside the store" not in body


async def test_bad_requests_get_errors_and_the_server_keeps_serving(store_dir: Path, nursery: trio.Nursery) -> None:
    port = await nursery.start(serve, store_dir, "127.0.0.1", 0)
    status, _, body = await raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
    assert status == 405 and b"only reads" in body
    status, _, _ = await raw(port, b"THIS IS NOT HTTP\r\n\r\n")
    assert status == 400
    status, _, _ = await raw(port, b"GET /" + b"a" * 40_000)  # a head that never ends
    assert status == 431
    # keep-alive: two requests on one connection
    s = await trio.open_tcp_stream("127.0.0.1", port)
    async with s:
        await s.send_all(b"GET /api/runs HTTP/1.1\r\nHost: x\r\n\r\nGET /api/runs?verdict=valid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        with trio.fail_after(10):
            while chunk := await s.receive_some(65536):
                data += chunk
    assert data.count(b"HTTP/1.1 200") == 2
    status, _, _ = await get(port, "/")
    assert status == 200


def test_command_defaults_and_bad_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert DEFAULT_HOST == "127.0.0.1"
    assert serve_command(tmp_path / "nope") == 254
    assert "no such store directory" in capsys.readouterr().err
