"""A real OTLP collector on loopback for local use and tests: rotel (``pip install rotel``).

    python -m observability.collector                 # OTLP gRPC :4317 and HTTP :4318, prints what it receives
    python -m observability.collector --grpc-port 0   # free ports, printed at start

rotel's ``rotel-agent`` receives OTLP over gRPC and HTTP/protobuf, drops it (``--exporter blackhole``) and
logs every span and metric it received (``--debug-log``). ``Collector`` runs it for the tests and
``parse_debug_log`` reads that log back into spans and metric points, so the tests assert on what went
over the wire, not on an in-process mock. For a production-like pipeline run the OpenTelemetry Collector
instead (see the README).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional


def rotel_binary() -> str:
    """Path of ``rotel-agent``: inside the ``rotel`` wheel, else on PATH."""
    try:
        import rotel

        candidate = Path(rotel.__file__).resolve().parent / "rotel-agent"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("rotel-agent")
    if found:
        return found
    raise FileNotFoundError("rotel-agent not found: `pip install rotel` (it is in requirements-dev.txt)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Collector:
    """``rotel-agent start`` on loopback; its debug log (what it received) goes to ``log_path``."""

    def __init__(self, log_path: Path, grpc_port: int | None = None, http_port: int | None = None,
                 verbosity: str = "detailed") -> None:
        self.log_path = Path(log_path)
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.verbosity = verbosity
        self.proc: subprocess.Popen | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def endpoint(self, protocol: str) -> str:
        return self.grpc_endpoint if protocol == "grpc" else self.http_endpoint

    def command(self) -> list[str]:
        state = self.log_path.with_suffix(".rotel")
        return [rotel_binary(), "start",
                "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
                "--exporter", "blackhole",
                "--debug-log", "traces", "--debug-log", "metrics", "--debug-log-verbosity", self.verbosity,
                # Only used when daemonized; kept out of the shared /tmp defaults all the same.
                "--pid-file", str(state) + ".pid", "--log-file", str(state) + ".log"]

    def start(self, timeout_s: float = 20.0) -> Collector:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rotel-agent exited with {self.proc.returncode}:\n{self.log()[-2000:]}")
            if _listening(self.grpc_port) and _listening(self.http_port):
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"rotel-agent not listening after {timeout_s}s:\n{self.log()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace") if self.log_path.exists() else ""

    def received(self) -> Received:
        return parse_debug_log(self.log())

    def wait_for(self, check: Callable[[Received], Any], timeout_s: float = 30.0, interval_s: float = 0.5) -> Received:
        """Poll the log until ``check(received)`` is truthy; on timeout, fail with what was received."""
        deadline = time.monotonic() + timeout_s
        while True:
            received = self.received()
            if check(received):
                return received
            if time.monotonic() > deadline:
                raise AssertionError(f"collector did not receive what was expected within {timeout_s}s; "
                                     f"got {len(received.spans)} spans, metrics {sorted(received.metric_names())}")
            time.sleep(interval_s)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------- debug log parser


@dataclass
class Span:
    trace_id: str = ""
    span_id: str = ""
    parent_id: str = ""
    name: str = ""
    kind: str = ""
    start_ns: int = 0
    end_ns: int = 0
    status: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name", ""))

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass
class Point:
    """One data point of one metric in one export."""

    name: str
    unit: str
    kind: str  # Sum, Gauge, Histogram
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    timestamp: int = 0
    value: float | None = None
    count: int | None = None
    sum: float | None = None
    bounds: list[float] = field(default_factory=list)
    buckets: list[int] = field(default_factory=list)

    def series(self) -> tuple:
        """Identity of the time series: resource instance, metric, attributes."""
        return (self.resource.get("service.instance.id"), self.name, tuple(sorted(self.attributes.items())))


@dataclass
class Received:
    spans: list[Span] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)

    def metric_names(self) -> set[str]:
        return {p.name for p in self.points}

    def latest(self, name: str, **attributes: Any) -> list[Point]:
        """The last exported point of each series of ``name`` whose attributes include ``attributes``
        (cumulative temporality: the last point holds the total)."""
        last: dict[tuple, Point] = {}
        for p in self.points:
            if p.name == name and all(p.attributes.get(k) == v for k, v in attributes.items()):
                key = p.series()
                if key not in last or p.timestamp >= last[key].timestamp:
                    last[key] = p
        return list(last.values())

    def total(self, name: str, **attributes: Any) -> float:
        """Sum over series of the latest value (counters, gauges) or count (histograms)."""
        return sum((p.count if p.kind == "Histogram" else p.value) or 0 for p in self.latest(name, **attributes))

    def histogram_sum(self, name: str, **attributes: Any) -> float:
        return sum(p.sum or 0.0 for p in self.latest(name, **attributes))

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]


_ATTR = re.compile(r"^\s*-> ([^:]+): (\w+)\((.*)\)\s*$")
_FIELD = re.compile(r"^\s*-> ([^:]+): ?(.*)$")
_SPAN_FIELD = re.compile(r"^\s{4}(Trace ID|Parent ID|ID|Name|Kind|Status code|Status message)\s*: ?(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _value(kind: str, raw: str) -> Any:
    if kind == "Int":
        return int(raw)
    if kind == "Double":
        return float(raw)
    if kind == "Bool":
        return raw == "true"
    return raw


def parse_debug_log(text: str) -> Received:
    """Spans and metric points from rotel's ``--debug-log-verbosity detailed`` output."""
    out = Received()
    resource: dict[str, Any] = {}
    scope = ""
    section = ""
    span: Optional[Span] = None
    item: Optional[dict[str, Any]] = None  # current event or link
    metric: Optional[dict[str, Any]] = None
    point: Optional[Point] = None
    for line in _ANSI.sub("", text.replace("\x00", "")).splitlines():
        stripped = line.strip()
        if line.startswith("ResourceSpans #") or line.startswith("ResourceMetrics #"):
            resource, section, span, point, metric = {}, "resource", None, None, None
        elif line.startswith("Resource attributes:"):
            section = "resource"
        elif line.startswith("ScopeSpans #") or line.startswith("ScopeMetrics #"):
            section = "scope"
        elif line.startswith("InstrumentationScope"):
            scope = stripped[len("InstrumentationScope"):].strip()
        elif line.startswith("Span #"):
            span = Span(resource=resource, scope=scope)
            out.spans.append(span)
            section, item = "span", None
        elif span is not None and (m := _SPAN_FIELD.match(line)):
            key, value = m.group(1), m.group(2).strip()
            if key == "Trace ID":
                span.trace_id = value
            elif key == "Parent ID":
                span.parent_id = value
            elif key == "ID":
                span.span_id = value
            elif key == "Name":
                span.name = value
            elif key == "Kind":
                span.kind = value.removeprefix("SPAN_KIND_")
            elif key == "Status code":
                span.status = value.removeprefix("STATUS_CODE_")
        elif span is not None and line.startswith("Start time:"):
            span.start_ns = int(stripped.split(":", 1)[1])
        elif span is not None and line.startswith("End time:"):
            span.end_ns = int(stripped.split(":", 1)[1])
        elif line.startswith("Attributes:") and span is not None and section in ("span", "span-attributes"):
            section = "span-attributes"
        elif line.startswith("Events:"):
            section = "events"
        elif line.startswith("SpanEvent #") and span is not None:
            item = {"attributes": {}}
            span.events.append(item)
            section = "event"
        elif line.startswith("Links:"):
            section = "links"
        elif line.startswith("SpanLink #") and span is not None:
            item = {"attributes": {}}
            span.links.append(item)
            section = "link"
        elif line.startswith("Metric #"):
            metric, point, section, span = {"name": "", "unit": "", "kind": ""}, None, "descriptor", None
        elif metric is not None and (line.startswith("NumberDataPoints #") or line.startswith("HistogramDataPoints #")):
            point = Point(metric["name"], metric["unit"], metric["kind"], resource=resource)
            out.points.append(point)
            section = "point"
        elif line.startswith("Data point attributes:"):
            section = "point-attributes"
        elif point is not None and (m := re.match(r"^(Timestamp|Value|Count|Sum): (.*)$", stripped)):
            key, raw = m.group(1), m.group(2)
            if key == "Timestamp":
                point.timestamp = int(raw)
            elif key == "Value":
                point.value = float(raw)
            elif key == "Count":
                point.count = int(raw)
            else:
                point.sum = float(raw)
        elif point is not None and (m := re.match(r"^ExplicitBounds #\d+: (.*)$", stripped)):
            point.bounds.append(float(m.group(1)))
        elif point is not None and (m := re.match(r"^Buckets #\d+, Count: (\d+)$", stripped)):
            point.buckets.append(int(m.group(1)))
        elif stripped.startswith("->"):
            attr = _ATTR.match(line)
            nested = line.startswith(" " * 10)
            if section == "resource" and attr:
                resource[attr.group(1)] = _value(attr.group(2), attr.group(3))
            elif section == "span-attributes" and attr and span is not None:
                span.attributes[attr.group(1)] = _value(attr.group(2), attr.group(3))
            elif section in ("event", "link") and item is not None:
                if nested and attr:
                    item["attributes"][attr.group(1)] = _value(attr.group(2), attr.group(3))
                elif (f := _FIELD.match(line)) and not nested:
                    item[f.group(1).strip()] = f.group(2).strip()
            elif section == "descriptor" and metric is not None and (f := _FIELD.match(line)):
                key = f.group(1).strip()
                if key in ("Name", "Unit"):
                    metric[key.lower()] = f.group(2).strip()
                elif key == "DataType":
                    metric["kind"] = f.group(2).strip()
            elif section == "point-attributes" and attr and point is not None:
                point.attributes[attr.group(1)] = _value(attr.group(2), attr.group(3))
    return out


# --------------------------------------------------------------------------------------------- command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run rotel, an OTLP collector, on loopback and print what it "
                                                 "receives (spans and metrics).")
    parser.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port (0: a free one)")
    parser.add_argument("--http-port", type=int, default=4318, help="OTLP/HTTP port (0: a free one)")
    parser.add_argument("--verbosity", choices=("basic", "detailed"), default="detailed")
    args = parser.parse_args(argv)
    grpc_port = args.grpc_port or free_port()
    http_port = args.http_port or free_port()
    import tempfile

    collector = Collector(Path(tempfile.mkdtemp(prefix="rotel-")) / "received.log", grpc_port, http_port,
                          verbosity=args.verbosity)
    print(f"OTLP collector (rotel) on 127.0.0.1: gRPC {grpc_port}, HTTP {http_port}. Point the service at it:\n"
          f"  export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{grpc_port} OTEL_EXPORTER_OTLP_PROTOCOL=grpc\n"
          f"  # or: export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{http_port} "
          f"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf\n"
          "Ctrl-C stops it.", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
    try:
        return subprocess.call(collector.command(), env=env)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
