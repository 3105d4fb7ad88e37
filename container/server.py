"""The image served by ``podman run`` as a managed process, as the cpu overlay's pod runs it.

Two networks:
    none  (default) the container has no network at all, only its loopback: a service that tried to fetch
          anything at start would fail. This process joins the container's network namespace to reach it
          (container/netns.py; root).
    host  the host's network, on a free port: for hosts where the test does not run as root.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from container import podman
from container.netns import enter_network_of
from container.pod import Pod
from harness import ManagedProcess, free_port, http_ready

NETWORKS = ("none", "host")


class ContainerServer:
    """``podman run IMAGE`` in the foreground (so its exit status is the container's); ready when /readyz
    answers 200. ``ready_after_s``: from ``podman run`` to ready."""

    def __init__(self, image: str, pod: Pod, log_path: Path, network: str = "none") -> None:
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}; got {network!r}")
        self.image = image
        self.pod = pod
        self.network = network
        self.name = f"dialogue-summarizer-test-{os.getpid()}"
        # On the host's network the pod's port may be taken: BentoML's serve reads its port from BENTOML_PORT.
        self.port = free_port() if network == "host" else pod.port
        options = ["--network", network, *pod.options]
        if network == "host":
            options += ["--env", f"BENTOML_PORT={self.port}"]
        self.url = f"http://127.0.0.1:{self.port}"
        self._inside = network == "host"  # whether this process reaches the container's 127.0.0.1
        self._http_ready = http_ready(self.url + "/readyz", timeout_s=1.0)
        argv = podman.run_argv(image, self.name, options)
        self.process = ManagedProcess(f"podman run {image}", argv, log_path, ready=self._ready)

    @property
    def ready_after_s(self) -> float | None:
        return self.process.ready_after_s

    def _ready(self) -> bool:
        if not self._inside:
            pid = podman.container_pid(self.name)
            if pid is None:
                return False
            enter_network_of(pid)
            self._inside = True
        return self._http_ready()

    def start(self, timeout_s: float = 180.0) -> ContainerServer:
        podman.remove(self.name)  # a container left by a killed earlier run with this process id
        self.process.start(timeout_s=timeout_s, poll_s=0.05)
        return self

    def terminate(self) -> tuple[int, float]:
        """``podman stop``: SIGTERM, SIGKILL after the pod's termination grace period. Returns the
        container's exit status and the seconds from SIGTERM to its exit."""
        started = time.perf_counter()
        podman.stop(self.name, self.pod.termination_grace_s)
        code = self.process.proc.wait(timeout=60)
        return code, time.perf_counter() - started

    def close(self) -> None:
        podman.remove(self.name)
        self.process.stop(grace_s=10)
