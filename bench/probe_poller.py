"""Health probes as Kubernetes sends them, timed while a load test runs: /readyz and /livez, each on a new
connection, with the kubelet's default timeout of 1 s, every 0.5 s (the kubelet's default period is 10 s and
deploy/ probes every 5 s; 0.5 s gives enough probes in a minute for a p99).

One thread per path, so a slow /readyz never delays a /livez probe. Each probe is recorded with its wall
time (``t``, seconds since the epoch), its latency and its HTTP status (0: no answer within the timeout, or
no connection). A probe fails, as the kubelet sees it, when it is not answered 200 within ``K8S_TIMEOUT_S``.

A path can be given a longer client timeout than the kubelet's (``timeouts``) to measure how slow it really
is: the load test uses that for /model, which still asks every backend for its status at each call, as
/readyz did before readiness read the last known state (serving/health.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import httpx

from bench.stats import percentile

K8S_TIMEOUT_S = 1.0  # the kubelet's default probe timeout (timeoutSeconds: 1)
PROBE_PATHS = ("/readyz", "/livez")
OLD_READINESS_PATH = "/model"  # asks both backends at every call, as /readyz did before the last known state


class ProbePoller:
    """GET each of ``paths`` on ``url`` every ``interval_s`` in a thread of its own, until ``stop()``.

    ``timeouts`` maps a path to its client timeout (default ``K8S_TIMEOUT_S``). ``records`` holds one dict
    per probe: ``path``, ``t`` (wall time it was sent), ``latency_s``, ``status`` and ``error`` (if any).
    Use as a context manager.
    """

    def __init__(self, url: str, paths: Sequence[str] = PROBE_PATHS, *, interval_s: float = 0.5,
                 timeouts: Mapping[str, float] | None = None) -> None:
        self.url = url.rstrip("/")
        self.paths = tuple(paths)
        self.interval_s = interval_s
        self.timeouts = {path: (timeouts or {}).get(path, K8S_TIMEOUT_S) for path in self.paths}
        self.records: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> ProbePoller:
        if self._threads:
            raise RuntimeError("the probe poller is already running; stop() it before starting it again")
        self._stop.clear()
        self._threads = [threading.Thread(target=self._poll, args=(path,), name=f"probe {path}", daemon=True)
                         for path in self.paths]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[dict]:
        """Stop probing (a probe in flight finishes first); the records, in the order they were sent."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []
        with self._lock:
            return sorted(self.records, key=lambda r: r["t"])

    def _poll(self, path: str) -> None:
        timeout = self.timeouts[path]
        # No keep-alive: the kubelet opens a new connection for every probe.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=self.url, timeout=timeout, limits=limits) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                record = _probe(client, path)
                with self._lock:
                    self.records.append(record)
                # Fixed ticks like the kubelet's; a probe slower than the interval skips the ticks it missed.
                next_at += self.interval_s * max(1, int((time.monotonic() - next_at) // self.interval_s) + 1)
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> ProbePoller:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _probe(client: httpx.Client, path: str) -> dict:
    sent = time.time()
    started = time.perf_counter()
    record = {"path": path, "t": round(sent, 3)}
    try:
        response = client.get(path)
        record["status"] = response.status_code
    except httpx.TimeoutException:
        record.update(status=0, error="timeout")
    except httpx.TransportError as exc:
        record.update(status=0, error=f"{type(exc).__name__}: {exc}"[:200])
    record["latency_s"] = round(time.perf_counter() - started, 5)
    return record


def failed(record: dict) -> bool:
    """The kubelet would count this probe as failed: not 200, or slower than its 1 s timeout."""
    return record["status"] != 200 or record["latency_s"] > K8S_TIMEOUT_S


def probe_stats(records: Sequence[dict]) -> dict:
    """Latency (ms) p50/p99/max, the count and the failures (by kind) of one path's probes."""
    latencies_ms = [r["latency_s"] * 1000 for r in records]
    kinds: dict[str, int] = {}
    for r in records:
        if failed(r):
            kind = _failure_kind(r)
            kinds[kind] = kinds.get(kind, 0) + 1
    return {"probes": len(records), "p50_ms": percentile(latencies_ms, 50), "p99_ms": percentile(latencies_ms, 99),
            "max_ms": max(latencies_ms, default=None), "failures": sum(kinds.values()), "failures_by_kind": kinds}


def _failure_kind(record: dict) -> str:
    if record["status"] == 0:
        return "timeout" if record.get("error") == "timeout" else "no connection"
    return "slower than 1 s" if record["status"] == 200 else f"HTTP {record['status']}"


def phase_of(t: float, started: float, bounds: Mapping[str, tuple[float, float]]) -> str:
    """The load phase at wall time ``t``: a name of ``bounds`` (seconds since ``started``, the load's start),
    'idle' before the load started, 'after' once the last phase ended."""
    offset = t - started
    if offset < 0:
        return "idle"
    for name, (lo, hi) in bounds.items():
        if lo <= offset < hi:
            return name
    return "after"


def probes_by_phase(records: Sequence[dict], started: float, bounds: Mapping[str, tuple[float, float]]) -> dict:
    """``probe_stats`` per phase (in the order idle, ``bounds``' phases, after) and per path."""
    phases: dict[str, dict[str, list[dict]]] = {}
    for record in records:
        phase = phase_of(record["t"], started, bounds)
        phases.setdefault(phase, {}).setdefault(record["path"], []).append(record)
    order = ["idle", *bounds, "after"]
    return {phase: {path: probe_stats(phases[phase][path]) for path in sorted(phases[phase], key=_path_order)}
            for phase in order if phase in phases}


def _path_order(path: str) -> tuple[int, str]:
    known = [*PROBE_PATHS, OLD_READINESS_PATH]
    return (known.index(path) if path in known else len(known), path)


def render_probes(by_phase: Mapping[str, Mapping[str, dict]], title: str) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    buf = StringIO()
    table = Table(title=escape(title), title_justify="left")
    for col in ("phase", "path", "probes", "p50", "p99", "max", "failed (not 200 within 1 s)"):
        table.add_column(col)
    for phase, paths in by_phase.items():
        for path, s in paths.items():
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(s["failures_by_kind"].items()))
            table.add_row(phase, path, str(s["probes"]), _ms(s["p50_ms"]), _ms(s["p99_ms"]), _ms(s["max_ms"]),
                          escape(f"{s['failures']}" + (f" ({kinds})" if kinds else "")))
    Console(file=buf, width=150, force_terminal=False).print(table)
    return buf.getvalue()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
