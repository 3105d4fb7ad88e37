"""Run a real ``bentoml serve`` process for tests and benchmarks, and stop it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServedSummarizer:
    """``bentoml serve service:DialogueSummarizer`` on a free loopback port, with the given environment."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None, target: str = "service:DialogueSummarizer"):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, **env}
        self.target = target
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180.0) -> ServedSummarizer:
        bentoml = Path(sys.executable).with_name("bentoml")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(bentoml), "serve", self.target, "--host", "127.0.0.1", "--port", str(self.port)],
                                     cwd=REPO_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            if self.ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"bentoml serve not ready after {timeout_s}s:\n{self.log()[-4000:]}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> ServedSummarizer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
