"""Capacity of one replica: throughput at the p99 alert threshold, replicas for a request rate, and what the
autoscaler's target means.

    python -m bench.capacity             full: 1, 2, 4, 8, 16, 32, 48, 64 users, 30 s measured each (~7 min)
    python -m bench.capacity --quick     smoke: 1, 2, 4 users, 4 s measured each

One replica as the CPU pod runs it: ``bentoml serve`` with the shipped settings (``--env KEY=VALUE`` to change
one) on the shipped default model, started here (bench/loadtest.py's ``start_service``). The offered load
rises in steps of closed-loop locust users (bench/locustfile.py, no think time: each user always has one
request in flight), one locust run per step. Per step, over a window that skips the first ``--warmup-s``:
throughput (answers completed in the window per second), p50/p99 latency of the requests started in it,
the requests in flight (Little's law: throughput x mean latency; and BentoML's
``bentoml_service_request_in_progress``, what the autoscaler reads, sampled from /metrics every 0.5 s) and
the requests that failed (anything but 200; past the admission limit, 503s).

The capacity is the highest throughput of a step whose p99 is within the p99 alert's threshold (read from
observability/alerts.yml) with no failure. Replicas for a rate are planned at ``--utilization`` of it (see
``replicas_for``); the autoscaler's target (read from deploy/base/scaledobject.yaml) is translated into
requests/s and latency per pod by interpolating the steps at that many requests in flight.
Results: a table on stdout, JSON in bench/results/capacity-<time>.json (and capacity-latest.json).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from bench.common import REPO_ROOT, busy_warning, git_revision, log, machine_info, now_iso, publish  # noqa: E402
from bench.loadtest import build_parser as loadtest_parser  # noqa: E402
from bench.loadtest import measure, plan, start_service  # noqa: E402
from bench.loadtest_report import classify  # noqa: E402
from bench.stats import latency_stats, mean  # noqa: E402

ALERTS = REPO_ROOT / "observability" / "alerts.yml"
P99_ALERT = "SummarizerLatencyP99High"
SCALED_OBJECT = REPO_ROOT / "deploy" / "base" / "scaledobject.yaml"
RATES = (10, 100, 1000)  # requests/s the README's table plans for
FULL = {"users": [1, 2, 4, 8, 16, 32, 48, 64], "warmup_s": 5.0, "window_s": 30.0}
QUICK = {"users": [1, 2, 4], "warmup_s": 1.0, "window_s": 4.0}
# Planned utilization: at 80 % of the measured capacity a replica still has a fifth in reserve for a burst,
# for the ~40 s before a new pod serves (15 s scrape + 15 s polling + the start) and for a lost pod.
UTILIZATION = 0.8


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (under a minute of load)")
    parser.add_argument("--users", help="comma-separated closed-loop users per step (default 1,2,4,8,16,32,48,64)")
    parser.add_argument("--warmup-s", type=float, help="seconds of each step left out (default 5; quick 1)")
    parser.add_argument("--window-s", type=float, help="seconds measured per step (default 30; quick 4)")
    parser.add_argument("--utilization", type=float, default=UTILIZATION,
                        help=f"share of the capacity replicas are planned at (default {UTILIZATION})")
    parser.add_argument("--model", help="stored model (default: $SUMMARIZER_MODEL or dialogue-bart-small:latest)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="setting for the started service, e.g. SUMMARIZER_ONNX_THREADS=1 (repeatable)")
    parser.add_argument("--out", help="results directory (default: bench/results)")
    parser.add_argument("--keep-logs", action="store_true")
    return parser


# --------------------------------------------------------------------------- the deployment's own numbers


def p99_alert_threshold_s(path: Path = ALERTS, alert: str = P99_ALERT) -> float:
    """The threshold (seconds) of the p99 latency alert in the Prometheus rules: ``... > <threshold>``."""
    rules = [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
    expr = next((rule["expr"] for rule in rules if rule.get("alert") == alert), None)
    if expr is None:
        raise ValueError(f"no alert {alert!r} in {path}; alerts there: {[r.get('alert') for r in rules]}")
    found = re.search(r">\s*([0-9.]+)\s*$", expr.strip())
    if not found:
        raise ValueError(f"alert {alert!r} in {path} does not end in '> <seconds>', e.g. '> 4': {expr!r}")
    return float(found.group(1))


def autoscaler_settings(path: Path = SCALED_OBJECT) -> dict:
    """minReplicaCount, maxReplicaCount and the in-flight target per pod of the KEDA ScaledObject."""
    spec = yaml.safe_load(path.read_text())["spec"]
    [trigger] = spec["triggers"]
    return {"min_replicas": spec["minReplicaCount"], "max_replicas": spec["maxReplicaCount"],
            "target_in_flight": float(trigger["metadata"]["threshold"])}


# --------------------------------------------------------------------------- measuring


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    steps = _steps(args)
    env = dict(item.split("=", 1) for item in args.env)
    threshold = p99_alert_threshold_s()
    autoscaler = autoscaler_settings()
    warning = busy_warning()
    if warning:
        log(f"warning: {warning}")
    load_before = [round(x, 2) for x in os.getloadavg()]
    logs = Path(tempfile.mkdtemp(prefix="capacity-"))
    server, model, max_pending = start_service(args.model, env, logs)
    try:
        measured = [run_step(server.url, users, steps, max_pending, logs) for users in steps["users"]]
    finally:
        server.stop()
    report = {"created": now_iso(), "git": git_revision(), "mode": "quick" if args.quick else "full",
              "command": "python -m bench.capacity " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": machine_info(), "load_average_before": load_before, "busy_warning": warning,
              "gpu": "not measured (no GPU in this run)", "model": model, "service_env": env,
              "admission_limit": max_pending, "config": steps, "p99_threshold_s": threshold,
              "steps": measured, **plan_replicas(measured, threshold, autoscaler, args.utilization)}
    publish("capacity", report, args.out, render(report), logs, args.keep_logs)
    return 0


def _steps(args: argparse.Namespace) -> dict:
    base = QUICK if args.quick else FULL
    users = [int(u) for u in args.users.split(",")] if args.users else base["users"]
    if not users or min(users) < 1:
        raise SystemExit(f"--users takes positive counts, e.g. 1,2,4,8; got {args.users!r}")
    warmup = args.warmup_s if args.warmup_s is not None else base["warmup_s"]
    window = args.window_s if args.window_s is not None else base["window_s"]
    return {"users": users, "warmup_s": warmup, "window_s": window,
            # requests started late in the window finish after it; locust drops whatever is unanswered at its end
            "tail_s": 2.0 if args.quick else 8.0}


def run_step(url: str, users: int, steps: dict, max_pending: int, logs: Path) -> dict:
    """``users`` closed-loop users for warm-up + window + tail seconds; the window's figures."""
    log(f"step: {users} users ...")
    hold_s = steps["warmup_s"] + steps["window_s"] + steps["tail_s"]
    step_logs = logs / f"users-{users}"
    step_logs.mkdir()
    args = loadtest_parser().parse_args(["--start-users", str(users), "--peak-users", str(users), "--ramp-s", "0",
                                         "--hold-s", str(hold_s), "--overload-users", "0", "--idle-s", "0"])
    config = {**plan(args, max_pending, step_logs), "probe_paths": []}
    with InFlightSampler(url) as sampler:
        measured = measure(url, config, step_logs)
    window = (steps["warmup_s"], steps["warmup_s"] + steps["window_s"])
    started = measured["load_started"]
    gauge = [value for t, value in sampler.samples if window[0] <= t - started < window[1]]
    return step_stats(users, measured["records"], window, gauge)


def step_stats(users: int, records: list[dict], window: tuple[float, float], in_flight_samples: list[float]) -> dict:
    """One step's figures from locust's records (``t``: start, seconds since locust started)."""
    lo, hi = window
    started = [r for r in records if lo <= r["t"] < hi]
    ok = [r for r in started if r.get("status") == 200]
    completed = [r for r in records if r.get("status") == 200 and lo <= r["t"] + r["latency_s"] < hi]
    throughput = len(completed) / (hi - lo)
    latency = latency_stats([r["latency_s"] for r in ok])
    outcomes: dict[str, int] = {}
    for r in started:
        outcomes[classify(r)] = outcomes.get(classify(r), 0) + 1
    return {"users": users, "window_s": hi - lo, "requests": len(started), "ok": len(ok),
            "errors": len(started) - len(ok), "outcomes": outcomes, "throughput_rps": throughput,
            "latency": latency,
            "in_flight_littles_law": throughput * latency["mean_s"] if latency["mean_s"] is not None else None,
            "in_flight_metrics": mean(in_flight_samples), "in_flight_samples": len(in_flight_samples)}


class InFlightSampler:
    """Reads the service's /metrics every ``interval_s`` in a thread: (wall time, requests in flight)."""

    def __init__(self, url: str, interval_s: float = 0.5) -> None:
        self.url, self.interval_s = url, interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="in-flight sampler", daemon=True)

    def _poll(self) -> None:
        import httpx

        from bench.prometheus import requests_in_flight

        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while not self._stop.wait(self.interval_s):
                try:
                    text = client.get("/metrics").text
                except httpx.HTTPError:
                    continue  # a missed sample: the mean is over the others
                self.samples.append((time.time(), requests_in_flight(text)))

    def __enter__(self) -> InFlightSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- planning


def plan_replicas(steps: list[dict], threshold_s: float, autoscaler: dict, utilization: float) -> dict:
    """The capacity, replicas per rate, and the autoscaler's target in requests/s and latency per pod."""
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization is a share of the capacity in (0, 1], e.g. 0.8; got {utilization}")
    within = [s for s in steps if s["errors"] == 0 and s["latency"]["p99_s"] is not None
              and s["latency"]["p99_s"] <= threshold_s]
    best = max(within, key=lambda s: s["throughput_rps"], default=None)
    capacity = best["throughput_rps"] if best else None
    target = at_in_flight(steps, autoscaler["target_in_flight"])
    rows = [{"rate_rps": rate,
             "replicas": replicas_for(rate, capacity, utilization, autoscaler["min_replicas"]),
             "autoscaler_settles_at": replicas_for(rate, target["throughput_rps"], 1.0, autoscaler["min_replicas"])
             if target else None}
            for rate in RATES]
    return {"capacity": {"throughput_rps": capacity, "users": best["users"] if best else None,
                         "p99_s": best["latency"]["p99_s"] if best else None,
                         "in_flight": best["in_flight_littles_law"] if best else None},
            "utilization": utilization, "autoscaler": {**autoscaler, "at_target": target}, "replicas": rows}


def replicas_for(rate_rps: float, per_replica_rps: float | None, utilization: float, minimum: int) -> int | None:
    """Replicas that carry ``rate_rps`` with each at ``utilization`` of ``per_replica_rps``; at least ``minimum``."""
    if not per_replica_rps:
        return None
    return max(minimum, math.ceil(rate_rps / (per_replica_rps * utilization) - 1e-9))


def at_in_flight(steps: list[dict], in_flight: float) -> dict | None:
    """Throughput and p99 interpolated where the steps held ``in_flight`` requests (Little's law), and the
    mean latency that means (in_flight / throughput); None when the steps never held that many."""
    points = sorted((s["in_flight_littles_law"], s) for s in steps if s["in_flight_littles_law"] is not None)
    for (x0, a), (x1, b) in zip(points, points[1:]):
        if x0 <= in_flight <= x1:
            share = (in_flight - x0) / (x1 - x0) if x1 > x0 else 0.0
            rps = a["throughput_rps"] + share * (b["throughput_rps"] - a["throughput_rps"])
            p99 = a["latency"]["p99_s"] + share * (b["latency"]["p99_s"] - a["latency"]["p99_s"])
            return {"in_flight": in_flight, "throughput_rps": rps, "mean_latency_s": in_flight / rps, "p99_s": p99}
    return None


# --------------------------------------------------------------------------- the table


def render(report: dict) -> str:
    machine = report["machine"]
    threshold = report["p99_threshold_s"]
    lines = [f"capacity of one replica: {report['model']}, admission limit {report['admission_limit']}, "
             f"{machine.get('cpus')} CPUs ({machine.get('processor')}), load average before "
             f"{_load(report['load_average_before'])}, after {_load(machine.get('load_average'))}",
             f"{'users':>5} {'answered/s':>10} {'p50':>7} {'p99':>7} {'in flight':>9} {'/metrics':>8} {'errors':>6}"]
    for s in report["steps"]:
        lat = s["latency"]
        lines.append(f"{s['users']:>5} {s['throughput_rps']:>10.1f} {_s(lat['p50_s']):>7} {_s(lat['p99_s']):>7} "
                     f"{_n(s['in_flight_littles_law']):>9} {_n(s['in_flight_metrics']):>8} {s['errors']:>6}")
    cap = report["capacity"]
    if cap["throughput_rps"] is None:
        lines.append(f"capacity: no step had p99 <= {threshold:g} s without errors")
    else:
        lines.append(f"capacity (p99 alert threshold {threshold:g} s, observability/alerts.yml): "
                     f"{cap['throughput_rps']:.1f} requests/s per replica at {cap['users']} users "
                     f"(p99 {cap['p99_s']:.2f} s, {cap['in_flight']:.1f} in flight); GPU: {report['gpu']}")
    auto = report["autoscaler"]
    target = auto["at_target"]
    if target:
        lines.append(f"autoscaler target {auto['target_in_flight']:g} in flight per pod = "
                     f"{target['throughput_rps']:.1f} requests/s per pod at {target['mean_latency_s']:.2f} s mean "
                     f"latency (Little's law), p99 about {target['p99_s']:.2f} s")
    lines.append(f"replicas (at {report['utilization']:.0%} of capacity, at least {auto['min_replicas']}; "
                 f"maxReplicaCount {auto['max_replicas']}):")
    for row in report["replicas"]:
        settles = (f"the autoscaler at target {auto['target_in_flight']:g} settles near "
                   f"{row['autoscaler_settles_at']}" if target else
                   f"no step held {auto['target_in_flight']:g} in flight: the autoscaler's count not known")
        lines.append(f"  {row['rate_rps']:>5} requests/s: {row['replicas']} replicas ({settles})")
    if report.get("busy_warning"):
        lines.append(f"warning: {report['busy_warning']}")
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _load(values) -> str:
    return "-" if not values else " ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
