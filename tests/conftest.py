"""Suite-wide collection rules: how `make test` spreads test files over pytest-xdist workers."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
# The slowest directories first, so no worker is left with a long file while the other idles.
ORDER = ("hosts", "e2e", "cluster", "unit")


def _group(path: Path) -> str:
    """A file's xdist group: its module fixtures (a cluster, a campaign) are built once, on one
    worker; every namespace-host test shares one group because two sets of test hosts set up at
    the same moment could pick the same free subnet."""
    rel = path.relative_to(ROOT)
    return "hosts" if rel.parts[0] == "hosts" else rel.as_posix()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group each test by file (hosts tests together) and run the slowest directories first."""
    def rank(item: pytest.Item) -> int:
        top = item.path.relative_to(ROOT).parts[0]
        return ORDER.index(top) if top in ORDER else len(ORDER)

    items.sort(key=rank)  # stable: the order within a directory stays pytest's
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item.path)))
