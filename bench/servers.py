"""What the benchmarks add to the process harness (``harness``): the BentoML service on a BentoML home of
its own, the FastAPI + ``pipeline("summarization")`` baseline's command, and the memory of a process tree.

Both servers are ``harness.ManagedProcess``es on a free loopback port: ``.url``, ``.ready_after_s`` (the
cold start: launch to ready), ``.stop()`` (the whole process tree).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness import ManagedProcess, bentoml_serve, free_port, http_ready

START_TIMEOUT_S = 300.0  # a cold start loads and warms every backend; slow on a busy 2-CPU machine


def bentoml_home() -> Path:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get())


def private_home(directory: Path) -> Path:
    """A BentoML home of one server's own that sees the real model store (``models`` is a link).

    ``bentoml serve`` empties ``$BENTOML_HOME/prometheus_multiproc_dir`` when it starts, so two servers on
    one home wipe each other's /metrics (the first one's batch-size histogram vanishes). Each server the
    benchmarks start gets its own home; nobody else's running server is touched.
    """
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "models"
    if not link.exists():
        link.symlink_to(bentoml_home() / "models", target_is_directory=True)
    return directory


def summarizer_server(name: str, model: str, log_dir: Path, **env: str) -> ManagedProcess:
    """``bentoml serve service:DialogueSummarizer`` (not started) on ``model``, ``SUMMARIZER_*`` from ``env``.
    The response cache is off unless ``env`` says otherwise: the benchmarks send the same dialogues many times
    and measure generation (bench/cache.py measures the cache). So are long dialogues' windows: the baselines
    beside the service (direct generate(), FastAPI + pipeline) read a dialogue in one call, and the service
    must do the same work to be compared (bench/long_dialogue.py measures the windows)."""
    full_env = {"SUMMARIZER_MODEL": model, "BENTOML_HOME": str(private_home(log_dir / f"home-{name}")),
                "SUMMARIZER_CACHE": "off", "SUMMARIZER_LONG_DIALOGUES": "false", **env}
    return bentoml_serve(log_dir / f"{name}.log", full_env, name=name)


def baseline_server(model_dir: str | Path, generation: dict, log_dir: Path, threads: int = 0,
                    mode: str = "serial") -> ManagedProcess:
    """The FastAPI + pipeline baseline (bench/baseline_fastapi.py) under uvicorn, one worker, as the
    tutorials run it; not started."""
    port = free_port()
    env = {"BASELINE_MODEL_DIR": str(model_dir), "BASELINE_GENERATION": json.dumps(generation),
           "BASELINE_THREADS": str(threads), "BASELINE_MODE": mode}
    argv = [sys.executable, "-m", "uvicorn", "bench.baseline_fastapi:app", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--log-level", "warning"]
    return ManagedProcess("fastapi-pipeline", argv, log_dir / "fastapi-pipeline.log",
                          ready=http_ready(f"http://127.0.0.1:{port}/healthz"), env=env, port=port)


def tree_memory(process: ManagedProcess) -> dict:
    """Resident memory of a server and all its descendants: RSS (shared pages counted per process),
    USS (pages only that process holds) and PSS (shared pages split between their users), in MiB."""
    import psutil

    if not process.running():
        return {"processes": 0}
    procs = [psutil.Process(process.pid), *process.descendants()]
    rss = uss = pss = 0
    rows = []
    for proc in {p.pid: p for p in procs}.values():
        try:
            full = proc.memory_full_info()
            cmd = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += full.rss
        uss += full.uss
        pss += getattr(full, "pss", 0)
        rows.append({"pid": proc.pid, "rss_mib": round(full.rss / 2**20, 1),
                     "pss_mib": round(getattr(full, "pss", 0) / 2**20, 1), "cmd": _short_cmd(cmd)})
    mib = 2**20
    return {"processes": len(rows), "rss_mib": round(rss / mib, 1), "uss_mib": round(uss / mib, 1),
            "pss_mib": round(pss / mib, 1), "per_process": rows}


def _short_cmd(cmd: str) -> str:
    if "--service-name " in cmd:
        return "service worker " + cmd.split("--service-name ", 1)[1].split()[0]
    for marker in ("bentoml serve", "uvicorn"):
        if marker in cmd:
            return marker
    return cmd[:80]
