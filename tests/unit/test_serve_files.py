"""`harness serve` lists a run directory's files (issue 18), inside the store only."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from harness.report.sample import make_run
from harness.serve import serve
from tests.unit.test_serve import get


async def test_a_run_directory_lists_its_files(tmp_path: Path, nursery: trio.Nursery) -> None:
    root = tmp_path / "store"
    run = make_run(root, "valid")
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", run / "leak.txt")
    port = await nursery.start(serve, root, "127.0.0.1", 0)
    status, headers, _ = await get(port, f"/runs/sample-valid/{run.name}")
    assert status == 301 and headers["location"] == f"/runs/sample-valid/{run.name}/"
    status, headers, body = await get(port, f"/runs/sample-valid/{run.name}/")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    for name in ("test.json", "history.jsonl", "results.json", "nodes/"):
        assert f'href="{name}"' in page, name
    assert "leak.txt" not in page  # a symlink out of the store is not listed (nor served)
    status, _, body = await get(port, f"/runs/sample-valid/{run.name}/nodes/")
    assert status == 200 and 'href="n1/"' in body.decode()
    status, _, body = await get(port, "/")
    assert f'href="/runs/sample-valid/{run.name}/">files</a>' in body.decode()
