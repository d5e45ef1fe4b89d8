"""Suite-wide collection order: the slowest directories first, so that under `make test`'s
pytest-xdist workers (--dist loadfile: each file whole on one worker) no worker is left with a
long file while the other idles."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
ORDER = ("hosts", "e2e", "cluster", "unit")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Sort by directory rank; stable, so the order within a directory stays pytest's."""
    def rank(item: pytest.Item) -> int:
        top = item.path.relative_to(ROOT).parts[0]
        return ORDER.index(top) if top in ORDER else len(ORDER)

    items.sort(key=rank)
