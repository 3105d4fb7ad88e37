"""``bentoml serve`` as a managed process: what the tests and the benchmarks start."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from harness.process import ManagedProcess, free_port, http_ready

SUMMARIZER = "service:DialogueSummarizer"


def bentoml_serve(log_path: str | Path, env: Mapping[str, str] | None = None, *, target: str = SUMMARIZER,
                  name: str = "bentoml serve", port: int | None = None) -> ManagedProcess:
    """``bentoml serve TARGET`` on 127.0.0.1 (a free port unless given), ready when /readyz answers 200.

    ``env`` is added to this process's environment (SUMMARIZER_*, BENTOML_HOME, OTEL_*). Not started:
    call ``.start()`` or use it as a context manager; ``.url`` is where it serves.
    """
    port = port or free_port()
    bentoml = Path(sys.executable).with_name("bentoml")
    return ManagedProcess(name, [str(bentoml), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
                          log_path, ready=http_ready(f"http://127.0.0.1:{port}/readyz"),
                          env={"BENTOML_DO_NOT_TRACK": "true", **(env or {})}, port=port)
