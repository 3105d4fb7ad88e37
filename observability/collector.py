"""A real OTLP collector on loopback for local use and tests: rotel (``pip install rotel``).

    python -m observability.collector                                # OTLP gRPC :4317 and HTTP :4318
    python -m observability.collector --grpc-port 0 --http-port 0    # free ports, printed at start

rotel's ``rotel-agent`` receives OTLP over gRPC and HTTP/protobuf. It has no file sink (its exporters are
OTLP, Kafka, ClickHouse, Datadog, X-Ray and a blackhole; its debug log is for people), so ``Collector``
has it forward everything with its OTLP/HTTP exporter to ``OtlpSink``, a small OTLP/HTTP receiver in
this process that keeps every export request and decodes its protobuf body with opentelemetry-proto
(observability/otlp_received.py). The tests thus assert on what went over the wire, through a real
collector, not on an in-process mock. For a production-like pipeline run the OpenTelemetry Collector
instead (see the README).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness import ManagedProcess, free_port, ports_listening
from observability.otlp_received import ANY, Point, Received, Span, decode_metrics, decode_traces

__all__ = ["ANY", "Collector", "OtlpSink", "Point", "Received", "Span", "rotel_binary"]

# OTLP/HTTP paths (the exporter's defaults) and the decoder of each request body.
DECODERS: dict[str, Callable[[bytes], list]] = {"/v1/traces": decode_traces, "/v1/metrics": decode_metrics}


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


class OtlpSink:
    """An OTLP/HTTP (protobuf) receiver on 127.0.0.1 that decodes and keeps what it is sent.

    ``on_received(spans, points)``, when given, is called from the receiving thread after each request.
    A body that does not decode is answered 400 and kept in ``errors``.
    """

    def __init__(self, on_received: Callable[[list[Span], list[Point]], None] | None = None) -> None:
        self.spans: list[Span] = []
        self.points: list[Point] = []
        self.errors: list[str] = []
        self.bodies: list[bytes] = []  # every request body as received (decompressed): what went over the wire
        self.on_received = on_received
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OtlpSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                status = sink.accept(self.path, body)
                self.send_response(status)
                # An empty body is a valid (empty) Export*ServiceResponse.
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # no access log on stderr
                pass

        # Port 0: the kernel picks a free port, and it is ours from this moment on (no race).
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="otlp-sink", daemon=True).start()
        return self

    def accept(self, path: str, body: bytes) -> int:
        with self._lock:
            self.bodies.append(body)
        decode = DECODERS.get(path)
        if decode is None:
            return 404 if path != "/v1/logs" else 200  # logs: accepted and dropped (the service sends none)
        try:
            items = decode(body)
        except Exception as exc:  # noqa: BLE001 - a body we cannot read is reported, not fatal here
            with self._lock:
                self.errors.append(f"{path}: {type(exc).__name__}: {exc}")
            return 400
        spans = items if path == "/v1/traces" else []
        points = items if path == "/v1/metrics" else []
        with self._lock:
            self.spans += spans
            self.points += points
        if self.on_received is not None:
            self.on_received(spans, points)
        return 200

    def received(self) -> Received:
        with self._lock:
            if self.errors:
                raise AssertionError(f"the collector forwarded OTLP that does not decode: {self.errors[:3]}")
            return Received(list(self.spans), list(self.points))

    def raw(self) -> list[bytes]:
        """The bodies of every export request received, logs included, decoded or not."""
        with self._lock:
            return list(self.bodies)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class Collector:
    """``rotel-agent start`` on loopback (OTLP gRPC and HTTP), forwarding to an ``OtlpSink``.

    rotel's own log goes to ``log_path``. ``record=False`` drops what it receives instead (rotel's
    blackhole exporter): for benchmarks, which want a collector, not a receiver in their own process.
    """

    def __init__(self, log_path: str | Path, grpc_port: int | None = None, http_port: int | None = None, *,
                 record: bool = True,
                 on_received: Callable[[list[Span], list[Point]], None] | None = None) -> None:
        self.log_path = Path(log_path)
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.sink = OtlpSink(on_received) if record else None
        self.process: ManagedProcess | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def endpoint(self, protocol: str) -> str:
        """Where a service exporting with OTEL_EXPORTER_OTLP_PROTOCOL=``protocol`` sends to."""
        return self.grpc_endpoint if protocol == "grpc" else self.http_endpoint

    def command(self) -> list[str]:
        state = self.log_path.with_suffix(".rotel")
        if self.sink is None:
            export = ["--exporter", "blackhole"]
        else:
            export = ["--exporter", "otlp", "--otlp-exporter-endpoint", self.sink.endpoint,
                      "--otlp-exporter-protocol", "http", "--otlp-exporter-compression", "none",
                      "--batch-timeout", "50ms"]  # forward within 50 ms of receiving (default 200 ms)
        return [rotel_binary(), "start",
                "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}", *export,
                # Only used when daemonized; kept out of the shared /tmp defaults all the same.
                "--pid-file", f"{state}.pid", "--log-file", f"{state}.log"]

    def start(self, timeout_s: float = 20.0) -> Collector:
        if self.sink is not None:
            self.sink.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}  # only our flags count
        self.process = ManagedProcess("rotel-agent", self.command(), self.log_path, env=env, inherit_env=False,
                                      ready=ports_listening(self.grpc_port, self.http_port), port=self.grpc_port)
        try:
            self.process.start(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop rotel (it forwards what it holds as it exits), then the sink; what was received stays."""
        if self.process is not None:
            self.process.stop(grace_s=10)
        if self.sink is not None:
            self.sink.stop()

    def log(self) -> str:
        return self.process.log() if self.process else ""

    def received(self) -> Received:
        if self.sink is None:
            raise RuntimeError("this Collector drops what it receives (record=False); create it with record=True")
        return self.sink.received()

    def wait_for(self, check: Callable[[Received], Any], timeout_s: float = 30.0, interval_s: float = 0.2) -> Received:
        """Poll until ``check(received)`` is truthy; on timeout, fail with what was received."""
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


# --------------------------------------------------------------------------------------------- command


def print_received(spans: list[Span], points: list[Point]) -> None:
    """One line per span and per metric point, for a person watching the terminal."""
    lines = [f"span   {s.service:<22} {s.kind:<8} {s.name:<40} {s.duration_s * 1000:9.1f} ms  "
             f"trace {s.trace_id}{'  ERROR ' + str(s.attributes.get('error.type', '')) if s.status == 'ERROR' else ''}"
             for s in spans]
    for p in points:
        labels = ",".join(f"{k}={v}" for k, v in sorted(p.attributes.items()))
        shown = f"count={p.count} sum={p.sum:g}" if p.kind == "Histogram" else f"{p.value:g}"
        lines.append(f"metric {p.resource.get('service.name', ''):<22} {p.name}{{{labels}}} {shown} {p.unit}")
    if lines:
        print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run rotel, an OTLP collector, on loopback and print what it "
                                                 "receives (spans and metric points).")
    parser.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port (0: a free one)")
    parser.add_argument("--http-port", type=int, default=4318, help="OTLP/HTTP port (0: a free one)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="rotel-"))
    collector = Collector(workdir / "rotel.log", args.grpc_port, args.http_port, on_received=print_received)
    with collector:
        print(f"OTLP collector (rotel) on 127.0.0.1: gRPC {collector.grpc_port}, HTTP {collector.http_port} "
              f"(its log: {collector.log_path}). Point the service at it:\n"
              f"  export OTEL_EXPORTER_OTLP_ENDPOINT={collector.grpc_endpoint} OTEL_EXPORTER_OTLP_PROTOCOL=grpc\n"
              f"  # or: export OTEL_EXPORTER_OTLP_ENDPOINT={collector.http_endpoint} "
              f"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf\n"
              "Ctrl-C stops it.", flush=True)
        try:
            while collector.process.running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
    print(f"rotel-agent exited:\n{collector.process.log_tail()}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
