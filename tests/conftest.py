"""Suite-wide collection order: the slowest directories first, so that under `make test`'s
pytest-xdist workers (--dist loadfile: each file whole on one worker) no worker is left with a
long file while the other idles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.deploy.local import PORT_RANGE_ENV, port_range

ROOT = Path(__file__).resolve().parent


def _worker_port_range() -> None:
    """Each pytest-xdist worker's campaigns take local node ports from their own part of the
    harness's range (inherited by every `harness run` they start): a node restarting on its
    port never finds it taken by a node of the other worker's campaign. tests/cluster's own
    nodes use ports below it (tests/cluster/conftest.py)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker[2:].isdigit() or count < 2 or PORT_RANGE_ENV in os.environ:
        return
    whole = port_range()
    size = len(whole) // count
    lo = whole.start + int(worker[2:]) % count * size
    os.environ[PORT_RANGE_ENV] = f"{lo}-{lo + size - 1}"


_worker_port_range()
ORDER = ("hosts", "e2e", "cluster", "unit")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Sort by directory rank; stable, so the order within a directory stays pytest's."""
    def rank(item: pytest.Item) -> int:
        top = item.path.relative_to(ROOT).parts[0]
        return ORDER.index(top) if top in ORDER else len(ORDER)

    items.sort(key=rank)
