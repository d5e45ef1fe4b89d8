"""Headless Chromium for the report's browser tests: Debian's chromium driven by playwright, with
a fresh profile and no network. Importing this module skips the importing test module when
either is missing."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that keep the browser from talking to anything but the page: no updates, no sync, no QUIC.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')")
if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install chromium; `make test` does it as root)", allow_module_level=True)


@contextmanager
def chromium() -> Iterator[Any]:
    """A browser context (1400x900, offline) on a profile that is removed afterwards."""
    with playwright_api.sync_playwright() as p, tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                                                   viewport={"width": 1400, "height": 900}, offline=True)
        try:
            yield ctx
        finally:
            ctx.close()
