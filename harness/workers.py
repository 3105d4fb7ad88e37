"""The worker processes of a running ``bentoml serve``: which process serves which service, and its socket.

BentoML's arbiter starts one process per worker, all ``python -m _bentoml_impl.worker.service ...
--service-name NAME --fd N --worker-id I``; it holds each service's listening socket (fd ``N`` in the
worker) and respawns a worker that dies, on the same socket. The fault drills (bench/drill.py) and their
test use this to find the process to kill and to see its replacement answer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import psutil


@dataclass(frozen=True)
class Worker:
    process: psutil.Process
    service: str  # BentoML's service name, e.g. "summarizer_onnx", "dialogue_summarizer"
    worker_id: int
    socket_path: str | None  # the Unix socket it serves on (a dependency service); None for a TCP one

    @property
    def pid(self) -> int:
        return self.process.pid


def service_workers(root_pid: int, service: str | None = None) -> list[Worker]:
    """The live worker processes under ``root_pid`` (``bentoml serve``'s pid), of ``service`` when given."""
    try:
        processes = psutil.Process(root_pid).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for process in processes:
        try:
            argv = process.cmdline()
        except psutil.Error:
            continue  # gone meanwhile
        name = _option(argv, "--service-name")
        if "_bentoml_impl.worker.service" not in argv or not name or (service and name != service):
            continue
        found.append(Worker(process, name, int(_option(argv, "--worker-id") or 0), _socket_path(process, argv)))
    return sorted(found, key=lambda w: (w.service, w.worker_id))


def replacement(root_pid: int, killed: Worker, timeout_s: float = 120.0, poll_s: float = 0.05) -> Worker:
    """The process BentoML started in place of ``killed`` (same service and worker id, another pid)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker in service_workers(root_pid, killed.service):
            if worker.worker_id == killed.worker_id and worker.pid != killed.pid:
                return worker
        time.sleep(poll_s)
    raise TimeoutError(f"no replacement for {killed.service} worker {killed.worker_id} within {timeout_s:.0f}s")


def wait_answering(socket_path: str, timeout_s: float = 120.0) -> None:
    """Until the service behind a Unix socket answers GET /readyz with 200 (a respawned worker loads its
    model first; meanwhile the arbiter's socket keeps the call waiting)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(transport=httpx.HTTPTransport(uds=socket_path), timeout=5.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get("http://localhost/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{socket_path} did not answer within {timeout_s:.0f}s")


def _option(argv: Sequence[str], name: str) -> str | None:
    try:
        return argv[argv.index(name) + 1]
    except (ValueError, IndexError):
        return None


def _socket_path(process: psutil.Process, argv: Sequence[str]) -> str | None:
    fd = _option(argv, "--fd")
    if fd is None:
        return None
    try:
        connections = process.net_connections(kind="unix")
    except psutil.Error:
        return None
    return next((c.laddr for c in connections if c.fd == int(fd) and c.laddr), None)
