"""``python -m container startup``: the time from ``podman run`` to /readyz 200, over several starts.

A benchmark figure (README "The CPU image"; target 5 s), not a test: each start runs the image as
``python -m container test`` does (the cpu overlay's pod, no network) and stops it once it is ready.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from container.pod import cpu_pod
from container.server import ContainerServer


def measure_starts(image: str, starts: int, log_dir: Path, network: str = "none") -> list[float]:
    pod = cpu_pod()
    log_dir.mkdir(parents=True, exist_ok=True)
    seconds = []
    for number in range(1, starts + 1):
        server = ContainerServer(image, pod, log_dir / f"start-{number}.log", network)
        try:
            server.start()
            seconds.append(server.ready_after_s)
        finally:
            server.close()
        print(f"start {number}: ready {seconds[-1]:.2f} s after `podman run`", flush=True)
    return seconds


def summary(seconds: list[float]) -> str:
    return (f"run to ready over {len(seconds)} starts: median {statistics.median(seconds):.2f} s "
            f"[{min(seconds):.2f}-{max(seconds):.2f}]")
