"""A real redis-server (Debian's package) on a free port: what the Redis cache tests run against."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from harness import ManagedProcess, free_port, ports_listening

REDIS_SERVER = shutil.which("redis-server")
NOT_INSTALLED = "redis-server not installed (Debian: apt-get install redis-server); the Redis cache is not tested"


class RedisServer(ManagedProcess):
    """redis-server on 127.0.0.1, in memory only (no RDB/AOF files), as the cache tests need it."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        port = port or free_port()
        super().__init__("redis-server", [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                          "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "no"],
                         workdir / f"redis-{port}.log", ready=ports_listening(port), port=port)
        self.url = f"redis://127.0.0.1:{port}/0"

    def kill(self) -> None:
        """SIGKILL: gone at once, as in a crash (connections reset, nothing answers on the port)."""
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: connections accepted by the kernel, nothing answered (a Redis that hangs)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


