"""Servers the benchmarks start and stop: the BentoML service (``bentoml serve``) and the baseline
(FastAPI + ``pipeline("summarization")`` under uvicorn), each on a free loopback port, in its own process
group, with its cold start (seconds from launch to ready) and the memory of its process tree."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import REPO_ROOT, tree_memory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedServer:
    """A server subprocess on 127.0.0.1: ``start()`` waits for ``ready_path`` to answer 200."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str], log_path: Path,
                 ready_path: str) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **env}
        self.log_path = Path(log_path)
        self.ready_path = ready_path
        self.proc: subprocess.Popen | None = None
        self.cold_start_s: float | None = None

    def start(self, timeout_s: float = 300.0, poll_s: float = 0.05) -> ManagedServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = started + timeout_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ready():
                self.cold_start_s = time.perf_counter() - started
                return self
            time.sleep(poll_s)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def memory(self) -> dict:
        return tree_memory(self.proc.pid) if self.proc else {"processes": 0}

    def get(self, path: str, timeout_s: float = 10.0) -> str:
        with urllib.request.urlopen(self.url + path, timeout=timeout_s) as resp:
            return resp.read().decode("utf-8", errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


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


def summarizer_server(name: str, model: str, log_dir: Path, **env: str) -> ManagedServer:
    """``bentoml serve service:DialogueSummarizer`` with ``SUMMARIZER_*`` settings from ``env``."""
    port = free_port()
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    full_env = {"BENTOML_DO_NOT_TRACK": "true", "SUMMARIZER_MODEL": model,
                "BENTOML_HOME": str(private_home(log_dir / f"home-{name}")), **env}
    return ManagedServer(name, [bentoml, "serve", "service:DialogueSummarizer", "--host", "127.0.0.1",
                                "--port", str(port)], port, full_env, log_dir / f"{name}.log", "/readyz")


def baseline_server(model_dir: str | Path, generation: dict, log_dir: Path, threads: int = 0,
                    mode: str = "serial") -> ManagedServer:
    """The FastAPI + pipeline baseline under uvicorn (one worker, as the tutorials run it)."""
    import json

    port = free_port()
    env = {"BASELINE_MODEL_DIR": str(model_dir), "BASELINE_GENERATION": json.dumps(generation),
           "BASELINE_THREADS": str(threads), "BASELINE_MODE": mode}
    return ManagedServer("fastapi-pipeline", [sys.executable, "-m", "uvicorn", "bench.baseline_fastapi:app",
                                              "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                                              "--log-level", "warning"],
                         port, env, log_dir / "fastapi-pipeline.log", "/healthz")
