"""One way to run a helper process: start a command (usually on a free loopback port), wait until it is
ready, show the tail of its log when it is not, and stop it with everything it started.

Used by the tests (``bentoml serve``, the OTLP collector), the benchmarks (the service, the FastAPI
baseline) and ``python -m observability.collector``. A stop sends SIGTERM to the process group and to
every descendant seen (a child that moved to a session of its own is still found), waits, then SIGKILLs
what is left: no orphan keeps a port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent

ReadyCheck = Callable[[], bool]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ready(url: str, timeout_s: float = 2.0) -> ReadyCheck:
    """Ready when GET ``url`` answers 200."""
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                return resp.status == 200
        except OSError:
            return False
    return check


def ports_listening(*ports: int) -> ReadyCheck:
    """Ready when every port accepts a TCP connection on 127.0.0.1."""
    def check() -> bool:
        for port in ports:
            with socket.socket() as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True
    return check


class ManagedProcess:
    """``argv`` in a new session (its own process group), output to ``log_path``.

    ``start()`` returns once ``ready()`` holds (``ready_after_s`` then says how long that took), and raises
    with the log's tail when the process exits or the timeout passes first. Use as a context manager.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: str | Path, *, ready: ReadyCheck | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | Path = REPO_ROOT,
                 inherit_env: bool = True, port: int | None = None) -> None:
        self.name = name
        self.port = port  # the port it serves on, when it serves (``url`` is then its loopback URL)
        self.url = f"http://127.0.0.1:{port}" if port else None
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.ready = ready or (lambda: True)
        self.env = {**(os.environ if inherit_env else {}), **(env or {})}
        self.cwd = Path(cwd)
        self.proc: subprocess.Popen | None = None
        self.ready_after_s: float | None = None
        self._log = None
        self._seen: dict[int, psutil.Process] = {}

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 180.0, poll_s: float = 0.05) -> ManagedProcess:
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid}); a second start would "
                               "launch a second process")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        started = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = started + timeout_s
        while True:
            self._remember_descendants()
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise RuntimeError(f"{self.name} exited with {code} before it was ready "
                                   f"(log {self.log_path}):\n{self.log_tail()}")
            if self.ready():
                self.ready_after_s = time.perf_counter() - started
                return self
            if time.perf_counter() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f}s (log {self.log_path}):\n"
                                   f"{self.log_tail()}")
            time.sleep(poll_s)

    def log(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]

    def descendants(self) -> list[psutil.Process]:
        """Live processes started by this one (and their children), as far as they were seen."""
        self._remember_descendants()
        return [p for p in self._seen.values() if _alive(p)]

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM to the group and every descendant seen, wait up to ``grace_s``, then SIGKILL what is
        left. Returns the main process's exit code (None when it was never started)."""
        if self.proc is None:
            return None
        self._remember_descendants()
        # The main process is waited for by Popen (so its exit code is kept); the others through psutil.
        others = [p for p in self._seen.values() if p.pid != self.proc.pid and _alive(p)]
        self._signal(signal.SIGTERM, others)
        deadline = time.monotonic() + grace_s
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        _, alive = psutil.wait_procs(others, timeout=max(0.0, deadline - time.monotonic()))
        if self.proc.poll() is None or alive:
            self._signal(signal.SIGKILL, alive)
            psutil.wait_procs(alive, timeout=10)
        code = self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def _remember_descendants(self) -> None:
        if self.proc is None:
            return
        try:
            root = psutil.Process(self.proc.pid)
            found = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in found:
            self._seen.setdefault(proc.pid, proc)

    def _signal(self, sig: int, processes: list[psutil.Process]) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for proc in processes:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
