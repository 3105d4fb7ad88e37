"""Load test: locust (headless) against a real ``bentoml serve``; limits, latency, errors, batch sizes, cost.

    python -m bench.loadtest                      full: 10 -> 50 users over 180 s, 60 s at 50, 60 s past capacity
    python -m bench.loadtest --quick              smoke: 10 -> 20 users over 20 s, 10 s hold, 15 s past capacity
    python -m bench.loadtest --url http://127.0.0.1:3000   against a service already running (loopback only)

Meanwhile /readyz and /livez are probed as Kubernetes does (every 0.5 s, 1 s timeout; bench/probe_poller.py),
from ``--idle-s`` seconds before the load starts until it ends: their latency and failures per phase.

Unless ``--url`` is given, the service is started here with the shipped settings (``--env KEY=VALUE`` to
change one), on the model in BentoML's store (default ``dialogue-bart-small:latest``), on a free loopback
port, with a BentoML home of its own (so no other server's /metrics is touched).

Users post DialogSum test dialogues, a mix of short and long ones (``--long-share`` of them from the longer
half), one after another (``--think-s`` between). Past the peak, ``--overload-users`` (default: twice the
service's admission limit, ``SUMMARIZER_MAX_PENDING`` per API worker) must get fast 503s with ``Retry-After``
and never a timeout or a 500. Reported per phase: throughput, p50/p95/p99 latency, errors by kind, the batch sizes
BentoML formed (its ``adaptive_batch_size`` histogram), the probes, and the cost of 1,000 requests and 1,000 tokens at
the measured throughput for a few instance prices, next to a managed endpoint's figures.
Results: a table on stdout, JSON in bench/results/loadtest-<time>.json (and loadtest-latest.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from bench.common import (REPO_ROOT, busy_warning, git_revision, log, machine_info, now_iso,  # noqa: E402
                          publish, short_and_long)
from bench.loadtest_report import DEFAULT_PRICES, analyse, cost_table, render  # noqa: E402
from bench.probe_poller import OLD_READINESS_PATH, PROBE_PATHS, ProbePoller  # noqa: E402
from bench.prometheus import batch_histogram, batch_histogram_delta  # noqa: E402
from harness import ManagedProcess  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (about a minute)")
    parser.add_argument("--model", help="stored model (default: $SUMMARIZER_MODEL or dialogue-bart-small:latest)")
    parser.add_argument("--url", help="a running service on 127.0.0.1 instead of starting one")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="setting for the started service, e.g. SUMMARIZER_MAX_PENDING=32 (repeatable)")
    parser.add_argument("--start-users", type=int, default=10)
    parser.add_argument("--peak-users", type=int, help="default 50 (quick: 20)")
    parser.add_argument("--ramp-s", type=float, help="seconds from start to peak users (default 180; quick 20)")
    parser.add_argument("--hold-s", type=float, help="seconds at the peak (default 60; quick 10)")
    parser.add_argument("--overload-users", type=int,
                        help="users past capacity (default: 2 x SUMMARIZER_MAX_PENDING x SUMMARIZER_API_WORKERS; "
                             "0 skips the phase)")
    parser.add_argument("--overload-s", type=float, help="seconds past capacity (default 60; quick 15)")
    parser.add_argument("--long-share", type=float, default=0.3, help="share of long dialogues (default 0.3)")
    parser.add_argument("--think-s", type=float, default=0.0, help="seconds a user waits between requests")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="client timeout per request")
    parser.add_argument("--idle-s", type=float, help="seconds of probes before the load starts (default 10; quick 5)")
    parser.add_argument("--probe-old-readiness", action="store_true",
                        help=f"also time {OLD_READINESS_PATH}, which asks every backend at each call as /readyz "
                             "used to (10 s client timeout)")
    parser.add_argument("--price", action="append", default=[], metavar="NAME=USD_PER_HOUR",
                        help="instance price for the cost table (repeatable; replaces the defaults)")
    parser.add_argument("--out", help="results directory (default: bench/results)")
    parser.add_argument("--keep-logs", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    prices = _prices(args.price)
    logs = Path(tempfile.mkdtemp(prefix="loadtest-"))
    warning = busy_warning()
    if warning:
        log(f"warning: {warning}")
    server = None
    try:
        if args.url:
            url, model, max_pending = _running_service(args.url, env)
        else:
            server, model, max_pending = start_service(args.model, env, logs)
            url = server.url
        config = plan(args, max_pending, logs)
        measured = measure(url, config, logs)
        if server:
            from bench.servers import tree_memory

            measured.update(memory_after=tree_memory(server), cold_start_s=server.ready_after_s,
                            service_log_errors=_log_errors(server))
    finally:
        if server:
            server.stop()
    report = analyse(measured.pop("records"), config, measured.pop("probe_records"), measured.pop("load_started"))
    report.update({
        "created": now_iso(), "git": git_revision(), "command": "python -m bench.loadtest " + " ".join(sys.argv[1:]),
        "mode": "quick" if args.quick else "full", "machine": machine_info(), "busy_warning": warning,
        "model": model, "url": url if args.url else "started here", "service_env": env,
        "admission_limit": max_pending, "config": {k: v for k, v in config.items() if k not in ("dialogues", "events")},
        "memory_after": None, "cold_start_s": None, "service_log_errors": None, **measured})
    report["cost"] = cost_table(report, prices)
    publish("loadtest", report, args.out, render(report), logs, args.keep_logs)
    return 0


def _running_service(url: str, env: dict) -> tuple[str, str | None, int]:
    """A service someone else started: its URL, model and admission limit (``--env`` or the default)."""
    from bench.load import check_loopback

    check_loopback(url)
    url = url.rstrip("/")
    return url, _served_model(url), _config_with(env).pod_admission_limit


def start_service(model: str | None, env: dict, logs: Path) -> tuple[ManagedProcess, str, int]:
    """The service started here with the shipped settings and ``env``: the process, model, admission limit."""
    from bench.servers import START_TIMEOUT_S, summarizer_server
    from serving.config import DEFAULT_MODEL_NAME

    model = model or os.environ.get("SUMMARIZER_MODEL") or f"{DEFAULT_MODEL_NAME}:latest"
    server = summarizer_server("loadtest-service", model, logs, **env)
    log(f"starting the service ({model}) ...")
    try:
        server.start(timeout_s=START_TIMEOUT_S)
    except BaseException:
        server.stop()
        raise
    log(f"ready in {server.ready_after_s:.1f} s on {server.url}")
    return server, _served_model(server.url) or model, _config_with(env).pod_admission_limit


def plan(args: argparse.Namespace, max_pending: int, logs: Path) -> dict:
    """The locust run's configuration (bench/locustfile.py reads it from $LOADTEST_CONFIG)."""
    quick = args.quick
    overload_users = args.overload_users if args.overload_users is not None else 2 * max_pending
    short, long_ = short_and_long()
    dialogues = logs / "dialogues.json"
    dialogues.write_text(json.dumps({"short": short, "long": long_}))
    idle_s = args.idle_s if args.idle_s is not None else (5.0 if quick else 10.0)
    return {"start_users": args.start_users, "peak_users": args.peak_users or (20 if quick else 50),
            "ramp_s": args.ramp_s if args.ramp_s is not None else (20.0 if quick else 180.0),
            "hold_s": args.hold_s if args.hold_s is not None else (10.0 if quick else 60.0),
            "overload_users": overload_users,
            "overload_s": args.overload_s if args.overload_s is not None else (15.0 if quick else 60.0),
            "long_share": args.long_share, "think_s": args.think_s, "timeout_s": args.timeout_s,
            "dialogues": str(dialogues), "events": str(logs / "events.json"), "spawn_rate": max(10, overload_users),
            "admission_limit": max_pending, "idle_s": idle_s,
            "probe_paths": [*PROBE_PATHS, *([OLD_READINESS_PATH] if args.probe_old_readiness else [])]}


def measure(url: str, config: dict, logs: Path) -> dict:
    """Run locust against ``url``, probing it meanwhile: the requests locust recorded, the probes, the
    batches BentoML formed, and when the load started (wall time)."""
    metrics_before = _metrics(url)
    poller = ProbePoller(url, config["probe_paths"], timeouts={OLD_READINESS_PATH: 10.0}).start()
    try:
        log(f"probing {', '.join(config['probe_paths'])} for {config['idle_s']:.0f} s before the load ...")
        time.sleep(config["idle_s"])
        log(f"locust: {_shape(config)} (admission limit {config['admission_limit']})")
        started = time.perf_counter()
        exit_code = _run_locust(url, config, logs)
        duration = time.perf_counter() - started
    finally:
        probes = poller.stop()
    metrics_after = _metrics(url)
    events = Path(config["events"])
    recorded = json.loads(events.read_text()) if events.exists() else {}
    records = recorded.get("records") or []
    if not records:
        raise RuntimeError(f"locust recorded no requests (exit {exit_code}):\n"
                           f"{(logs / 'locust.log').read_text()[-3000:]}")
    return {"records": records, "probe_records": probes, "load_started": recorded["started"],
            "duration_s": round(duration, 1), "locust_exit_code": exit_code,
            "batch_sizes": batch_histogram_delta(batch_histogram(metrics_before), batch_histogram(metrics_after))}


def _shape(config: dict) -> str:
    """The load's phases in words, e.g. '10 -> 50 users over 180 s, then 60 s at 50, then 128 users for 60 s'."""
    steps = []
    if config["ramp_s"]:
        steps.append(f"{config['start_users']} -> {config['peak_users']} users over {config['ramp_s']:.0f} s")
    if config["hold_s"]:
        steps.append(f"{config['hold_s']:.0f} s at {config['peak_users']}")
    if config["overload_users"]:
        steps.append(f"{config['overload_users']} users for {config['overload_s']:.0f} s")
    return ", then ".join(steps)


def _config_with(env: dict):
    """The service's configuration with ``env`` over this process's environment."""
    from serving.config import ServingConfig

    return ServingConfig.load({**os.environ, **env})


def _prices(items: list[str]) -> dict[str, float]:
    if not items:
        return dict(DEFAULT_PRICES)
    out = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep:
            raise SystemExit(f"--price expects NAME=USD_PER_HOUR, e.g. 'my instance=0.1'; got {item!r}")
        out[name] = float(value)
    return out


def _served_model(url: str) -> str | None:
    from client import ClientError, SummarizerClient

    try:
        with SummarizerClient(url, timeout_s=10) as summarizer:
            return summarizer.model().get("model")
    except ClientError:
        return None


def _metrics(url: str) -> str:
    from client import ClientError, SummarizerClient

    try:
        with SummarizerClient(url, timeout_s=10) as summarizer:
            return summarizer.metrics_text()
    except ClientError:
        return ""


def _run_locust(url: str, config: dict, logs: Path) -> int | None:
    """locust, headless, for the whole load shape; its exit code (stopped if it overruns)."""
    argv = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "bench" / "locustfile.py"), "--headless",
            "--host", url, "--only-summary", "--loglevel", "WARNING", "--csv", str(logs / "locust"),
            "--exit-code-on-error", "0"]
    total = config["ramp_s"] + config["hold_s"] + (config["overload_s"] if config["overload_users"] else 0)
    locust = ManagedProcess("locust", argv, logs / "locust.log", env={"LOADTEST_CONFIG": json.dumps(config)})
    locust.start()
    try:
        locust.proc.wait(timeout=total + config["timeout_s"] + 120)
    except subprocess.TimeoutExpired:
        log(f"locust still running {total + config['timeout_s'] + 120:.0f} s after its start; stopping it")
    finally:
        code = locust.stop()
    return code


def _log_errors(server: ManagedProcess) -> dict:
    lines = [line for line in server.log().splitlines() if "ERROR" in line or "Traceback" in line]
    return {"count": len(lines), "first": lines[:5]}


if __name__ == "__main__":
    sys.exit(main())
