"""What a backend service does, apart from BentoML wiring: decide its role, load its engine, generate.

A backend that is neither primary nor fallback on this machine (PyTorch without a GPU, by default)
loads no model: it answers ``status`` and refuses ``generate`` with a message naming the setting.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from observability import telemetry
from serving.config import ServingConfig
from serving.devices import cuda_available
from serving.engines import HF_SUBDIR, ONNX_SUBDIR, Engine, OnnxEngine, TorchEngine
from serving.protocol import BackendStatus, GenerationJob, GenerationResult

logger = logging.getLogger(__name__)

HANG_SECONDS = 3600.0  # an injected hang outlasts any sensible SUMMARIZER_PRIMARY_TIMEOUT_S


class BackendDisabled(RuntimeError):
    pass


class BackendWorker:
    def __init__(self, name: str, config: ServingConfig, model_path: str | Path, model_tag: str) -> None:
        if name not in ("torch", "onnx"):
            raise ValueError(f"unknown backend {name!r}; expected 'torch' or 'onnx'")
        self.name = name
        self.config = config
        self.model_tag = model_tag
        primary, fallback = config.routing(cuda_available())
        self.role = "primary" if name == primary else "fallback" if name == fallback else "idle"
        self.engine: Engine | None = None
        if self.role != "idle":
            started = time.perf_counter()
            hf_dir = Path(model_path) / HF_SUBDIR
            if name == "torch":
                self.engine = TorchEngine(hf_dir, model_tag, threads=config.torch_threads)
            else:
                self.engine = OnnxEngine(hf_dir, model_tag, threads=config.onnx_threads,
                                         onnx_dir=Path(model_path) / ONNX_SUBDIR)
            logger.info("%s backend (%s) loaded %s in %.1fs", name, self.role, model_tag,
                        time.perf_counter() - started)
        else:
            logger.info("%s backend idle on this machine (primary %s, fallback %s): no model loaded",
                        name, primary, fallback)

    @property
    def device(self) -> str:
        if self.engine is None:
            return "none"
        return self.engine.backend.split("-", 1)[1]

    def status(self) -> BackendStatus:
        return BackendStatus(backend=self.name, loaded=self.engine is not None, role=self.role,
                             device=self.device, model=self.model_tag)

    def generate(self, jobs: list[GenerationJob]) -> list[GenerationResult]:
        telemetry.batch_started(self.name, jobs)  # queue-wait spans and metrics; no-op without OTLP
        if self.engine is None:
            raise BackendDisabled(f"{self.name} backend is idle on this machine (set SUMMARIZER_PRIMARY or "
                                  "SUMMARIZER_FALLBACK to use it)")
        if self.name in self.config.faults.hang:
            time.sleep(HANG_SECONDS)
        if self.name in self.config.faults.error:
            raise RuntimeError(f"injected fault in the {self.name} backend (SUMMARIZER_INJECT_FAULT)")
        return self.engine.generate(jobs)
