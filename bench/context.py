"""What the benchmark's items share (``BenchContext``): the model, its settings, the inputs, the servers and
engines started so far (each at most once, stopped at the end), and what one item measured for another.

The items (bench/items/) take the context and return their part of the results; the context starts a
server or loads an engine the first time an item asks for it.
"""

from __future__ import annotations

import argparse
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import load_dialogues, log
from harness import ManagedProcess


@dataclass(frozen=True)
class StoredModel:
    tag: str
    hf_dir: Path
    onnx_dir: Path
    metadata: dict


@dataclass(frozen=True)
class Inputs:
    """The DialogSum test dialogues of each kind of measurement, in fixed seeded orders."""
    overhead: list[str]  # sequential requests of item 1 (and the baseline's one-client throughput)
    load: list[str]  # requests per throughput round of items 2 and 3
    engine: list[str]  # dialogues per round of item 4

    @classmethod
    def for_preset(cls, preset: dict) -> Inputs:
        return cls(overhead=load_dialogues(preset["overhead_requests"], seed=1),
                   load=load_dialogues(preset["load_requests"], seed=2),
                   engine=load_dialogues(preset["engine_dialogues"], seed=3))


def stored_model(ref: str | None) -> StoredModel:
    """The model in BentoML's store: ``ref``, else $SUMMARIZER_MODEL, else the shipped default (latest)."""
    from model_store.store import get_model
    from serving.config import DEFAULT_MODEL_NAME
    from serving.engines import HF_SUBDIR, ONNX_SUBDIR

    ref = ref or os.environ.get("SUMMARIZER_MODEL") or f"{DEFAULT_MODEL_NAME}:latest"
    stored = get_model(ref if ":" in ref else ref + ":latest")
    path = Path(stored.path)
    return StoredModel(str(stored.tag), path / HF_SUBDIR, path / ONNX_SUBDIR, dict(stored.info.metadata))


@dataclass
class BenchContext:
    args: argparse.Namespace
    preset: dict
    items: list[str]
    model: StoredModel
    settings: Any  # serving.protocol.GenerationSettings: the model's own, for every system
    threads: int
    backend: str  # 'onnx' or 'torch': the service's primary and the direct baseline's engine
    inputs: Inputs
    logs: Path
    stack: ExitStack  # stops every server and removes temporary models when the run ends
    engines: dict = field(default_factory=dict)  # item 4's in-process engines, by name
    servers: dict[str, ManagedProcess] = field(default_factory=dict)
    cold_starts: list[dict] = field(default_factory=list)
    start_errors: dict[str, str] = field(default_factory=dict)  # server name -> why it did not start
    shared: dict = field(default_factory=dict)  # what one item measured for another (throughput rounds)
    _direct: Any = None

    @property
    def concurrency(self) -> int:
        return self.args.concurrency

    def wants(self, item: str) -> bool:
        return item in self.items

    # ------------------------------------------------------------------ servers

    def service_env(self) -> dict[str, str]:
        """The service's settings for every measurement: same backend and threads as the direct engine."""
        return {"SUMMARIZER_PRIMARY": self.backend, "SUMMARIZER_ONNX_THREADS": str(self.threads),
                "SUMMARIZER_TORCH_THREADS": str(self.threads),
                "SUMMARIZER_MAX_PENDING": str(max(64, 4 * self.concurrency)),
                # benchmarks measure throughput; the default 30 s primary timeout would turn the queue of
                # a batching-off server at concurrency 32 into 503s
                "SUMMARIZER_PRIMARY_TIMEOUT_S": "3600", "SUMMARIZER_REQUEST_TIMEOUT_S": "3600",
                "SUMMARIZER_MAX_LIST_ITEMS": "32"}

    def start(self, process: ManagedProcess) -> ManagedProcess:
        """Start a server (stopped when the run ends) and note its cold start."""
        from bench.servers import START_TIMEOUT_S

        log(f"  starting {process.name} ...")
        self.stack.callback(process.stop)
        process.start(timeout_s=START_TIMEOUT_S)
        log(f"  {process.name} ready in {process.ready_after_s:.1f} s on {process.url}")
        return process

    def server(self, name: str, **env: str) -> ManagedProcess:
        """The service called ``name`` with these settings added, started the first time it is asked for."""
        from bench.servers import summarizer_server

        if name not in self.servers:
            process = summarizer_server(name, self.model.tag, self.logs, **self.service_env(), **env)
            self.servers[name] = self.start(process)
            self.cold_starts.append({"server": name, "seconds": process.ready_after_s})
        return self.servers[name]

    def batching_on(self) -> ManagedProcess:
        return self.server("service-batching", SUMMARIZER_MAX_BATCH_SIZE="32")

    def batching_off(self) -> ManagedProcess | None:
        """The service with adaptive batching off, or None (why: ``start_errors['batching_off']``)."""
        if "batching_off" in self.start_errors:
            return None
        try:
            return self.server("service-no-batching", SUMMARIZER_MAX_BATCH_SIZE="1")
        except (RuntimeError, TimeoutError) as exc:  # reported by item 2; the other items still run
            self.start_errors["batching_off"] = _start_error(exc)
            log(f"  batching-off service did not start: {self.start_errors['batching_off']}")
            return None

    def baseline(self) -> ManagedProcess:
        """The FastAPI + pipeline baseline, started the first time it is asked for."""
        from bench.servers import baseline_server
        from serving.engines import generate_kwargs

        if "fastapi-pipeline" not in self.servers:
            process = baseline_server(self.model.hf_dir, generate_kwargs(self.settings), self.logs,
                                      threads=self.threads, mode=self.args.baseline_mode)
            self.servers["fastapi-pipeline"] = self.start(process)
        return self.servers["fastapi-pipeline"]

    # ------------------------------------------------------------------ engines

    def direct_engine(self):
        """The engine the service runs, in this process: item 4's when loaded (same backend), else its own."""
        from serving.devices import cuda_available

        if self.backend == "onnx" and "onnx" in self.engines:
            return self.engines["onnx"]
        if self.backend == "torch" and "torch" in self.engines and not cuda_available():
            return self.engines["torch"]
        if self._direct is None:
            from serving.engines import OnnxEngine, TorchEngine

            hf_dir, tag = self.model.hf_dir, self.model.tag
            self._direct = (OnnxEngine(hf_dir, tag, threads=self.threads, onnx_dir=self.model.onnx_dir)
                            if self.backend == "onnx" else TorchEngine(hf_dir, tag, threads=self.threads))
        return self._direct


def _start_error(exc: Exception) -> str:
    """The last line of a failed server's traceback (its log tail is in the exception text)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__
