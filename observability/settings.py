"""Whether and how to export: the standard ``OTEL_*`` variables, read once per process.

Off unless an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT``, or the per-signal
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``). Dialogue text and
summaries are recorded only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from observability.names import CAPTURE_CONTENT_ENV


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "false", "0", "no", "off"):
        return False
    if raw in ("true", "1", "yes", "on"):
        return True
    raise ValueError(f"{name}={raw!r} must be true or false")


@dataclass(frozen=True)
class TelemetrySettings:
    traces: bool = False
    metrics: bool = False
    traces_protocol: str = "http/protobuf"
    metrics_protocol: str = "http/protobuf"
    capture_content: bool = False

    @property
    def enabled(self) -> bool:
        return self.traces or self.metrics

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TelemetrySettings:
        env = os.environ if env is None else env
        capture = _flag(env, CAPTURE_CONTENT_ENV)
        if _flag(env, "OTEL_SDK_DISABLED"):
            return cls(capture_content=capture)
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        default_protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip().lower() or "http/protobuf"

        def signal(name: str) -> tuple[bool, str]:
            exporter = env.get(f"OTEL_{name}_EXPORTER", "").strip().lower() or "otlp"
            if exporter not in ("otlp", "none"):
                raise ValueError(f"OTEL_{name}_EXPORTER={exporter!r}: the summarizer exports 'otlp' or 'none'")
            protocol = env.get(f"OTEL_EXPORTER_OTLP_{name}_PROTOCOL", "").strip().lower() or default_protocol
            if protocol not in ("grpc", "http/protobuf"):
                var = f"OTEL_EXPORTER_OTLP_{name}_PROTOCOL" if env.get(f"OTEL_EXPORTER_OTLP_{name}_PROTOCOL") \
                    else "OTEL_EXPORTER_OTLP_PROTOCOL"
                raise ValueError(f"{var}={protocol!r} must be 'grpc' or 'http/protobuf'")
            endpoint = env.get(f"OTEL_EXPORTER_OTLP_{name}_ENDPOINT", "").strip() or base
            return exporter == "otlp" and bool(endpoint), protocol

        traces, traces_protocol = signal("TRACES")
        metrics, metrics_protocol = signal("METRICS")
        return cls(traces, metrics, traces_protocol, metrics_protocol, capture)


_settings: TelemetrySettings | None = None


def settings() -> TelemetrySettings:
    global _settings
    if _settings is None:
        _settings = TelemetrySettings.from_env()
    return _settings


def enabled() -> bool:
    """Whether OTLP export is configured (read once per process from the environment)."""
    return settings().enabled
