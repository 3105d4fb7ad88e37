"""What every benchmark shares: statistics, the inputs, the machine, process memory, results files."""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
INPUT_SET = "dialogsum_test"
LIBRARIES = ("torch", "transformers", "optimum-onnx", "onnxruntime", "bentoml", "fastapi", "uvicorn", "locust")


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


def spread(values: Sequence[float]) -> dict:
    """Median of repeated measurements and how far they spread (min, max, quartiles, n, all values)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "p25": None, "p75": None, "n": 0, "values": []}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "p25": percentile(vals, 25), "p75": percentile(vals, 75), "n": len(vals),
            "values": [round(v, 6) for v in vals]}


def latency_stats(latencies_s: Sequence[float]) -> dict:
    vals = list(latencies_s)
    return {"n": len(vals), "mean_s": statistics.fmean(vals) if vals else None,
            "p50_s": percentile(vals, 50) if vals else None, "p95_s": percentile(vals, 95) if vals else None,
            "p99_s": percentile(vals, 99) if vals else None, "max_s": max(vals) if vals else None}


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Pair-by-pair ratios of measurements taken in the same round."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators but {len(denominators)} denominators")
    return [n / d for n, d in zip(numerators, denominators) if d]


def verdict(value: float | None, target: float, kind: str) -> dict:
    """{'target', 'kind', 'met'}: kind 'max' means value <= target, 'min' means value >= target."""
    met = None if value is None else (value <= target if kind == "max" else value >= target)
    return {"target": target, "kind": kind, "met": met}


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


def tree_memory(pid: int) -> dict:
    """Resident memory of a process and all its descendants: RSS (shared pages counted per process),
    USS (pages only that process holds) and PSS (shared pages split between their users), in MiB."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {"processes": 0}
    rss = uss = pss = 0
    rows = []
    for proc in procs:
        try:
            full = proc.memory_full_info()
            cmd = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += full.rss
        uss += full.uss
        pss += getattr(full, "pss", 0)
        rows.append({"pid": proc.pid, "rss_mib": round(full.rss / 2**20, 1), "cmd": _short_cmd(cmd)})
    mib = 2**20
    return {"processes": len(rows), "rss_mib": round(rss / mib, 1), "uss_mib": round(uss / mib, 1),
            "pss_mib": round(pss / mib, 1), "per_process": rows}


def _short_cmd(cmd: str) -> str:
    for marker in ("--service-name ", "bentoml serve", "uvicorn"):
        if marker in cmd:
            if marker == "--service-name ":
                return "service worker " + cmd.split(marker, 1)[1].split()[0]
            return marker
    return cmd[:80]


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


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started


def fmt(value, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:  # nan
        return "-"
    return f"{value:.{digits}f}{unit}"
