"""The images' lock files: written by uv (`make lock-cpu`, `make lock-gpu`) for the base image's Python on Linux
x86_64, and checked with pip's own resolver for that platform without downloading a wheel.

    python -m container lock --recipe gpu        rewrite requirements-gpu.lock.txt from requirements-gpu.txt
    python -m container resolve --recipe gpu     pip install --dry-run of the lock for the image: what it installs

The check works on any machine with PyPI (or the index of a pip.conf) and fetches no wheel: pip reads each
wheel's metadata, which PyPI serves on its own (PEP 658); from an index that does not (a mirror, a caching
proxy), fast-deps reads it out of the wheel with HTTP range requests. Without it pip would download the GPU
lock's wheels whole: 1.5 GB, 34 s on this machine's proxy, against 17 s and about 50 MB with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from harness.process import REPO_ROOT

# The newest glibc the wheels may need: both bases have a newer one (bookworm 2.36, Ubuntu 24.04 2.39).
GLIBC_MINOR = 28
MANYLINUX = f"manylinux_2_{GLIBC_MINOR}"


def manylinux_platforms() -> list[str]:
    """Every wheel platform tag a glibc 2.28 x86_64 system installs, newest first. pip takes a --platform
    literally (``manylinux_2_28_x86_64`` alone would refuse grpcio's ``manylinux_2_17`` wheels), so the
    resolver gets them all, with the legacy names of 2.17, 2.12 and 2.5."""
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 4, -1)]
    return tags + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


@dataclass(frozen=True)
class LockedRecipe:
    name: str
    requirements: Path    # what the image needs, by hand
    lock: Path            # every package pinned: what the image installs
    python_version: str   # the base image's python3

    def compile_argv(self) -> list[str]:
        uv = str(Path(sys.executable).with_name("uv"))
        return [uv, "pip", "compile", str(self.requirements.relative_to(REPO_ROOT)),
                "--python-version", self.python_version, "--python-platform", f"x86_64-{MANYLINUX}",
                "--no-annotate", "--custom-compile-command", f"make lock-{self.name}",
                "-o", str(self.lock.relative_to(REPO_ROOT))]

    def resolve_argv(self, report: Path) -> list[str]:
        # --ignore-installed: resolve as for an empty venv, not against this one's packages. pip evaluates
        # environment markers (platform_machine, sys_platform) on the machine it runs on, so only a Linux
        # x86_64 host resolves torch's CUDA dependencies as the image does.
        platforms = [arg for tag in manylinux_platforms() for arg in ("--platform", tag)]
        return [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
                "--use-feature=fast-deps", *platforms, "--python-version", self.python_version,
                "--implementation", "cp", "--quiet", "--report", str(report), "-r", str(self.lock)]


RECIPES = {
    "cpu": LockedRecipe("cpu", REPO_ROOT / "requirements-cpu.txt", REPO_ROOT / "requirements-cpu.lock.txt", "3.11"),
    # nvidia/cuda:*-ubuntu24.04 has no Python; the template installs Ubuntu 24.04's python3, 3.12.
    "gpu": LockedRecipe("gpu", REPO_ROOT / "requirements-gpu.txt", REPO_ROOT / "requirements-gpu.lock.txt", "3.12"),
}


def pins(text: str) -> dict[str, str]:
    """name -> version of every ``name==version`` line of a requirements file; raises on a line that is not one."""
    from packaging.requirements import Requirement

    found = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise ValueError(f"not pinned: {line!r}; a lock pins every package, e.g. torch==2.13.0")
        found[canonicalize_name(requirement.name)] = specs[0].version
    return found


def requirements(path: Path) -> list:
    """The requirements of a requirements file, those of the files it includes with ``-r`` too."""
    from packaging.requirements import Requirement

    found = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found += requirements(path.parent / line[3:].strip())
        elif line:
            found.append(Requirement(line))
    return found


def stale_pins(locked: LockedRecipe) -> list[str]:
    """What the lock misses or pins outside its requirements file: empty when the lock is current."""
    pinned = pins(locked.lock.read_text())
    problems = []
    for requirement in requirements(locked.requirements):
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version):
            problems.append(f"{locked.requirements.name} asks {requirement}, {locked.lock.name} has "
                            f"{version or 'nothing'}: run make lock-{locked.name}")
    return problems


def cuda_packages(names) -> list[str]:
    """The CUDA libraries among package names (nvidia-ml-py, NVML's bindings, is in the CPU image too)."""
    return sorted(n for n in names if n.startswith(("nvidia-", "cuda-")) and n != "nvidia-ml-py")


def recipe(name: str) -> LockedRecipe:
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}; got {name!r}")
    return RECIPES[name]


def write_lock(locked: LockedRecipe) -> None:
    argv = locked.compile_argv()
    print("$ " + " ".join(argv), flush=True)
    subprocess.run(argv, cwd=REPO_ROOT, check=True)


@dataclass(frozen=True)
class Resolution:
    installs: dict[str, str]   # name -> version pip would install
    wheels: dict[str, str]     # name -> the wheel's file name
    seconds: float


def resolve(locked: LockedRecipe, cache_dir: Path | None = None) -> Resolution:
    """pip's resolver on the lock, dependencies included, for the image's platform and Python; raises with
    pip's message when a pin has no wheel there or two pins conflict. A dependency the lock lacks shows as
    a package in ``installs`` that the lock does not pin."""
    with tempfile.TemporaryDirectory(prefix="pip-resolve-") as scratch:
        report = Path(scratch) / "report.json"
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "PIP_CACHE_DIR": str(cache_dir or Path(scratch) / "cache")}
        started = time.perf_counter()
        result = subprocess.run(locked.resolve_argv(report), env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"pip cannot install {locked.lock.name} for Linux x86_64, CPython "
                               f"{locked.python_version}:\n{result.stderr[-3000:]}")
        items = json.loads(report.read_text())["install"]
    installs = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in items}
    wheels = {canonicalize_name(item["metadata"]["name"]): item["download_info"]["url"].rsplit("/", 1)[-1]
              for item in items}
    return Resolution(installs=installs, wheels=wheels, seconds=seconds)
