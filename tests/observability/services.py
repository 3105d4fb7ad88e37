"""The services that the telemetry runs observe: each a real ``bentoml serve`` exporting to a collector of
its own, configured for what its run must make happen (the runs are in scenarios.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness import ManagedProcess, bentoml_serve
from observability.collector import Collector
from observability.drift import REFERENCE_FILE
from tests.observability.otel_checks import otel_env

# The tiny model ships no reference distribution: the shipped default model's (the same BART tokenizer) stands
# in, so the runs export the drift gauge too (from the first dialogue on).
DRIFT = {"SUMMARIZER_DRIFT_REFERENCE": str(Path(__file__).resolve().parents[2] / "model_store" / "default_model"
                                           / REFERENCE_FILE), "SUMMARIZER_DRIFT_MIN_DIALOGUES": "1"}

# A backend thread stuck in an injected hang never ends, so a graceful shutdown never does either.
STOP_GRACE_S = 1.0

# Per run: its SUMMARIZER_* settings, then the OTLP protocols of its traces and metrics (between them,
# the runs use every exporter the service can be configured with).
SETTINGS: dict[str, tuple[dict[str, str], str, str]] = {
    # The primary hangs: after SUMMARIZER_PRIMARY_TIMEOUT_S each request falls back to ONNX. An export
    # gives up (and is counted as failed) after 1 s of retries, not 5 s.
    "fallback_run": ({"SUMMARIZER_PRIMARY": "torch", "SUMMARIZER_FALLBACK": "onnx",
                      "SUMMARIZER_INJECT_FAULT": "torch:hang", "SUMMARIZER_PRIMARY_TIMEOUT_S": "1",
                      "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "1", **DRIFT},
                     "grpc", "http/protobuf"),
    # The only backend hangs; one request at a time.
    "outage_run": ({"SUMMARIZER_PRIMARY": "onnx", "SUMMARIZER_FALLBACK": "none",
                    "SUMMARIZER_INJECT_FAULT": "onnx:hang", "SUMMARIZER_PRIMARY_TIMEOUT_S": "1",
                    "SUMMARIZER_MAX_PENDING": "1"}, "http/protobuf", "grpc"),
    # The primary fails at once, the fallback hangs past the request timeout.
    "timeout_run": ({"SUMMARIZER_PRIMARY": "torch", "SUMMARIZER_FALLBACK": "onnx",
                     "SUMMARIZER_INJECT_FAULT": "torch:error,onnx:hang", "SUMMARIZER_REQUEST_TIMEOUT_S": "1"},
                    "grpc", "grpc"),
}


@dataclass
class Service:
    collector: Collector
    server: ManagedProcess

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop(grace_s=STOP_GRACE_S)
        self.collector.stop()


def start_services(runs: list[str], model: str, serve_env, workdir: Path) -> dict[str, Service]:
    """The services of ``runs``, started together: a start mostly waits (imports, model loads, readiness),
    so together they take little longer than one."""
    services: dict[str, Service] = {}
    for run in runs:
        (workdir / run).mkdir(parents=True, exist_ok=True)
        collector = Collector(workdir / run / "collector.log").start()
        settings, traces, metrics = SETTINGS[run]
        env = serve_env(model, **settings, **otel_env(collector, traces, metrics))
        services[run] = Service(collector, bentoml_serve(workdir / run / "serve.log", env))
    if services:
        with ThreadPoolExecutor(len(services)) as pool:
            starts = [pool.submit(s.server.start) for s in services.values()]
        failed = [f.exception() for f in starts if f.exception() is not None]
        if failed:
            for service in services.values():
                service.stop()
            raise failed[0]
    return services
