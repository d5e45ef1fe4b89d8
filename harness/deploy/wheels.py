"""The wheels an SSH host needs to run a node, built for the host's Python, not this machine's.

A node imports trio, msgpack and kazoo (and coverage under ``harness run --coverage``); the
harness's own libraries (paramiko and its cryptography, rich, h11) stay on the control machine.
So a host gets the ringlab wheel (pure Python) installed without dependencies plus the node's
distributions. When the host's Python or platform differs from this machine's (Vagrant's Debian
12 has 3.11; the control machine may run 3.12), the dependency wheels are downloaded for the
host's interpreter, ABI and glibc instead of collected for this one: a cp312 msgpack wheel does
not install on 3.11.
"""

from __future__ import annotations

import platform
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

# The distributions node/ imports (see the module docstring); their version bounds come from
# pyproject.toml so host and control machine agree.
NODE_DISTRIBUTIONS = ("trio", "msgpack", "msgspec", "kazoo", "coverage")
# The oldest glibc manylinux wheels target (manylinux2014 = glibc 2.17).
MIN_MANYLINUX_GLIBC_MINOR = 17
# Printed by the host's Python: major, minor, machine, then libc name and version when glibc.
PROBE = ("import sys, platform; print(sys.version_info[0], sys.version_info[1], platform.machine(), "
         "*platform.libc_ver())")


@dataclass(frozen=True)
class PythonTarget:
    """An interpreter wheels must fit: CPython version, machine, glibc version (None: not glibc)."""

    major: int
    minor: int
    machine: str
    glibc: tuple[int, int] | None

    @classmethod
    def parse(cls, text: str) -> PythonTarget:
        """Read :data:`PROBE`'s output (ValueError if it is not that)."""
        parts = text.split()
        if len(parts) < 3:
            raise ValueError(f"unexpected interpreter description {text.strip()!r}")
        glibc = None
        if len(parts) >= 5 and parts[3] == "glibc":
            m = re.match(r"(\d+)\.(\d+)", parts[4])
            glibc = (int(m.group(1)), int(m.group(2))) if m else None
        return cls(int(parts[0]), int(parts[1]), parts[2], glibc)

    @classmethod
    def local(cls) -> PythonTarget:
        """This interpreter."""
        lib, version = platform.libc_ver()
        m = re.match(r"(\d+)\.(\d+)", version) if lib == "glibc" else None
        return cls(sys.version_info[0], sys.version_info[1], platform.machine(),
                   (int(m.group(1)), int(m.group(2))) if m else None)

    def tag(self) -> str:
        """A directory name for this target's wheelhouse."""
        libc = f"-glibc{self.glibc[0]}.{self.glibc[1]}" if self.glibc else ""
        return f"cp{self.major}{self.minor}-{self.machine}{libc}"

    def pip_download_args(self) -> list[str]:
        """``pip download`` options selecting wheels this interpreter can install."""
        abi = f"cp{self.major}{self.minor}"
        args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", f"{self.major}.{self.minor}",
                "--abi", abi, "--abi", "abi3", "--abi", "none"]
        if self.glibc is not None and self.glibc[0] == 2:
            for minor in range(self.glibc[1], MIN_MANYLINUX_GLIBC_MINOR - 1, -1):
                args += ["--platform", f"manylinux_2_{minor}_{self.machine}"]
            args += ["--platform", f"manylinux2014_{self.machine}"]
        args += ["--platform", f"linux_{self.machine}"]
        return args


def node_requirements(source_dir: Path) -> list[str]:
    """The node's requirement strings from pyproject.toml (bounds included)."""
    project = tomllib.loads((source_dir / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    out = []
    for req in project.get("dependencies", []):
        name = re.split(r"[<>=!~\[;\s]", req, maxsplit=1)[0].strip().lower()
        if name in NODE_DISTRIBUTIONS:
            out.append(req)
    return out


def dependency_pip_args(target: PythonTarget, out_dir: Path, requirements: list[str]) -> list[str]:
    """The pip command (after ``python -m pip``) that fills ``out_dir`` with wheels for ``target``:
    collected for this interpreter when it is the target, downloaded for the target otherwise."""
    if target == PythonTarget.local():
        return ["wheel", "-q", "-w", str(out_dir), *requirements]
    return ["download", "-q", "-d", str(out_dir), *target.pip_download_args(), *requirements]
