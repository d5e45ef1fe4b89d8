"""The SSH deploy's wheelhouse cache: the ringlab wheel is rebuilt only when its sources change,
dependency wheels come from the local cache before any index, and builds at once never mix."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from harness.deploy import ssh
from harness.deploy.wheels import PythonTarget

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small stand-in checkout with every item the wheel is built from."""
    src = tmp_path / "src"
    for item in ssh._SOURCE_ITEMS:
        if (REPO / item).is_dir():
            (src / item).mkdir(parents=True)
            (src / item / "__init__.py").write_text(f"# {item}\n")
        else:
            (src / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / item, src / item)
    return src


@pytest.fixture
def fake_pip(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """pip as a recorder: `wheel --no-deps` writes a ringlab wheel, dependency runs write one
    dependency wheel, and an offline (--no-index) run fails unless the cache already has it."""
    calls: list[list[str]] = []

    def out_dir(args: list[str]) -> Path:
        flag = "-w" if "-w" in args else "-d"
        return Path(args[args.index(flag) + 1])

    def pip(args: list[str], what: str) -> None:
        calls.append(args)
        if "--no-deps" in args:
            (out_dir(args) / "ringlab-0.1.0-py3-none-any.whl").write_bytes(b"wheel of " + args[-1].encode())
        else:
            (out_dir(args) / "trio-0.35.0-py3-none-any.whl").write_bytes(b"trio")

    def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        args = argv[3:]  # after `python -m pip`
        calls.append(args)
        cache = Path(args[args.index("--find-links") + 1])
        if (cache / "trio-0.35.0-py3-none-any.whl").exists():
            shutil.copy2(cache / "trio-0.35.0-py3-none-any.whl", out_dir(args))
            return subprocess.CompletedProcess(argv, 0, "", "")
        return subprocess.CompletedProcess(argv, 1, "", "no matching distribution")

    monkeypatch.setattr(ssh, "_pip", pip)
    monkeypatch.setattr(ssh.subprocess, "run", run)
    monkeypatch.setattr(ssh, "node_requirements", lambda _src: ["trio"])
    return calls


def test_a_second_build_of_the_same_sources_reuses_every_wheel(source: Path, tmp_path: Path,
                                                                 fake_pip: list[list[str]]) -> None:
    first = ssh.build_wheelhouse(source, tmp_path / "wh")
    assert [w.name for w in first] == ["ringlab-0.1.0-py3-none-any.whl", "trio-0.35.0-py3-none-any.whl"]
    built = sum("--no-deps" in c for c in fake_pip)
    online = sum("--no-index" not in c and "--no-deps" not in c for c in fake_pip)
    assert (built, online) == (1, 1)  # the offline try failed on an empty cache, the index filled it
    fake_pip.clear()
    second = ssh.build_wheelhouse(source, tmp_path / "wh")
    assert second == first
    assert all("--no-index" in c for c in fake_pip) and len(fake_pip) == 1  # no build, no index


def test_changed_sources_build_a_new_wheel_and_old_builds_are_pruned(source: Path, tmp_path: Path,
                                                                     fake_pip: list[list[str]],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "KEEP_RINGLAB_BUILDS", 2)
    paths = []
    for i in range(4):
        (source / "node" / "__init__.py").write_text(f"# version {i}\n")
        paths.append(ssh.build_wheelhouse(source, tmp_path / "wh")[0])
    assert len({p.parent for p in paths}) == 4  # one build per distinct source
    assert sum("--no-deps" in c for c in fake_pip) == 4
    assert [p.exists() for p in paths] == [False, False, True, True]
    # A .pyc or __pycache__ beside the sources changes nothing.
    (source / "node" / "__pycache__").mkdir()
    (source / "node" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert ssh.build_wheelhouse(source, tmp_path / "wh")[0] == paths[-1]


def test_builds_at_once_each_get_one_whole_wheelhouse(source: Path, tmp_path: Path,
                                                      fake_pip: list[list[str]]) -> None:
    results: list[list[Path]] = []
    threads = [threading.Thread(target=lambda: results.append(ssh.build_wheelhouse(source, tmp_path / "wh")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert all(p.read_bytes() for p in results[0])
    assert sum("--no-deps" in c for c in fake_pip) == 1  # the lock made the others reuse the first build
    target_dir = tmp_path / "wh" / PythonTarget.local().tag()
    assert not [d for d in (target_dir / "ringlab").iterdir() if d.name.startswith("build-")]
