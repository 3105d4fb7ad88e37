"""What every benchmark shares: the inputs, the machine, its load, the results files, a log line.

Statistics are in bench/stats.py, servers and process memory in bench/servers.py."""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
INPUT_SET = "dialogsum_test"
LIBRARIES = ("torch", "transformers", "optimum-onnx", "onnxruntime", "bentoml", "fastapi", "uvicorn", "locust")


# --------------------------------------------------------------------------- inputs


def load_dialogues(n: int, seed: int = 6, data_dir: str | None = None) -> list[str]:
    """``n`` DialogSum test dialogues in a fixed, seeded order (every system gets exactly these)."""
    from eval.datasets import load_eval_set

    examples = load_eval_set(INPUT_SET, data_dir)
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    return [examples[order[i % len(order)]].dialogue for i in range(n)]


def short_and_long(data_dir: str | None = None) -> tuple[list[str], list[str]]:
    """DialogSum test dialogues split at the median length (characters): (short half, long half)."""
    from eval.datasets import load_eval_set

    texts = sorted((ex.dialogue for ex in load_eval_set(INPUT_SET, data_dir)), key=len)
    half = len(texts) // 2
    return texts[:half], texts[half:]


# --------------------------------------------------------------------------- machine and processes


def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "processor": _cpu_model(), "memory_gb": None, "load_average": None, "versions": {}}
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    for name in LIBRARIES:
        try:
            info["versions"][name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - no GPU information is not an error
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def busy_warning(threshold: float = 0.5) -> str | None:
    """A warning when other processes keep the CPUs busy (timings taken then say little)."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return None
    cpus = os.cpu_count() or 1
    if load1 > threshold * cpus:
        return (f"1-minute load average {load1:.1f} on {cpus} CPUs before the run: other processes are busy, "
                "so absolute timings (and to a lesser degree the ratios) are unreliable")
    return None


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------- results


def write_results(kind: str, data: dict, out_dir: str | os.PathLike | None = None) -> Path:
    """Write ``data`` to <out>/<kind>-<UTC time>.json and <out>/<kind>-latest.json; returns the first."""
    directory = Path(out_dir) if out_dir else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{kind}-{stamp}.json"
    text = json.dumps(data, indent=2, default=_jsonable)
    path.write_text(text)
    (directory / f"{kind}-latest.json").write_text(text)
    return path


def publish(kind: str, report: dict, out_dir: str | os.PathLike | None, rendered: str, logs: Path,
            keep_logs: bool) -> Path:
    """Write a run's results, print its table and where they went; its logs are kept only when asked."""
    path = write_results(kind, report, out_dir)
    print(rendered)
    print(f"\nresults: {path}")
    if keep_logs:
        print(f"logs: {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return path


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fmt(value, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:  # nan
        return "-"
    return f"{value:.{digits}f}{unit}"


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries the report."""
    print(message, file=sys.stderr, flush=True)
