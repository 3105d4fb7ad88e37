"""What a backend service does, apart from BentoML wiring: decide its role, load its engine, generate.

A backend that is neither primary nor fallback on this machine (PyTorch without a GPU, by default)
loads no model: it answers ``status`` and refuses ``generate`` with a message naming the setting.
A failed generate() is answered as data (``BackendFailure``, the exception's class and message) so the
public service's router and telemetry see what went wrong; BentoML would send a bare HTTP 500.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from serving.config import ServingConfig
from serving.devices import cuda_available
from serving.engines import HF_SUBDIR, ONNX_SUBDIR, Engine, OnnxEngine, TorchEngine
from serving.observers import NO_OBSERVER, EngineObserver, Isolated
from serving.protocol import (BackendFailure, BackendName, BackendStatus, Device, GenerationJob, GenerationOutcome,
                              Role)

logger = logging.getLogger(__name__)

HANG_SECONDS = 3600.0  # an injected hang outlasts any sensible SUMMARIZER_PRIMARY_TIMEOUT_S


class BackendDisabled(RuntimeError):
    pass


class InjectedFault(RuntimeError):
    pass


class BackendWorker:
    def __init__(self, name: BackendName, config: ServingConfig, model_path: str | Path, model_tag: str,
                 observer: EngineObserver | None = None) -> None:
        self.name = BackendName(name)
        self.config = config
        self.model_tag = model_tag
        self.observer = Isolated(observer) if observer is not None else NO_OBSERVER
        primary, fallback = config.routing(cuda_available())
        self.role = Role.PRIMARY if self.name is primary else Role.FALLBACK if self.name is fallback else Role.IDLE
        self.engine: Engine | None = None
        if self.role is Role.IDLE:
            logger.info("%s backend idle on this machine (primary %s, fallback %s): no model loaded",
                        self.name, primary, fallback)
            return
        started = time.perf_counter()
        hf_dir = Path(model_path) / HF_SUBDIR
        if self.name is BackendName.TORCH:
            self.engine = TorchEngine(hf_dir, model_tag, threads=config.torch_threads, observer=observer)
        else:
            self.engine = OnnxEngine(hf_dir, model_tag, threads=config.onnx_threads,
                                     onnx_dir=Path(model_path) / ONNX_SUBDIR, observer=observer)
        logger.info("%s backend (%s) loaded %s in %.1fs", self.name, self.role, model_tag,
                    time.perf_counter() - started)

    @property
    def device(self) -> Device:
        return self.engine.engine.device if self.engine is not None else Device.NONE

    def status(self) -> BackendStatus:
        return BackendStatus(backend=self.name, loaded=self.engine is not None, role=self.role,
                             device=self.device, model=self.model_tag)

    def generate(self, jobs: list[GenerationJob]) -> list[GenerationOutcome]:
        self.observer.batch_started(self.name, jobs)  # queue-wait spans and metrics, when observed
        try:
            results = self._generate(jobs)
        except Exception as exc:  # noqa: BLE001 - every job of the batch gets the failure, typed
            logger.exception("%s backend failed a batch of %d", self.name, len(jobs))
            failure = BackendFailure(backend=self.name, error_type=type(exc).__name__, message=str(exc))
            return [GenerationOutcome(failure=failure) for _ in jobs]
        if len(results) != len(jobs):
            raise RuntimeError(f"{self.name} engine returned {len(results)} results for {len(jobs)} jobs")
        return [GenerationOutcome(result=result) for result in results]

    def _generate(self, jobs: list[GenerationJob]):
        if self.engine is None:
            raise BackendDisabled(f"{self.name} backend is idle on this machine (set SUMMARIZER_PRIMARY or "
                                  "SUMMARIZER_FALLBACK to use it)")
        if self.name in self.config.faults.hang:
            time.sleep(HANG_SECONDS)
        if self.name in self.config.faults.error:
            raise InjectedFault(f"injected fault in the {self.name} backend (SUMMARIZER_INJECT_FAULT)")
        return self.engine.generate(jobs)
