"""Health probes under overload, alone: is the service still ready (and alive) for Kubernetes when it is
twice past its admission limit?

    python -m bench.probes                      SUMMARIZER_MAX_PENDING=64, 128 users for 60 s (as make loadtest)
    python -m bench.probes --admission-limit 16 --seconds 30

Starts the service (shipped settings, ``--env KEY=VALUE`` to change one) with the admission limit
``--admission-limit``, probes it for ``--idle-s`` seconds at rest, then for ``--seconds`` under
``--users`` closed-loop locust users (default: twice the limit; no think time, each waits what a 503's
Retry-After says) posting DialogSum dialogues, exactly as ``make loadtest``'s past-capacity phase.
Throughout, /readyz and /livez are probed as the kubelet does (a new connection, 1 s timeout, here every
0.5 s), and /model beside them: it asks both backends for their status at every call, as /readyz did before
readiness read the last known state (serving/health.py), so its column is the old behaviour in the same run.

Targets (issue 12, past the admission limit): /readyz p99 <= 100 ms, /livez p99 <= 50 ms.
Results: a table on stdout, JSON in bench/results/probes-<time>.json (and probes-latest.json).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from bench.common import busy_warning, git_revision, log, machine_info, now_iso, publish  # noqa: E402
from bench.loadtest import build_parser as loadtest_parser  # noqa: E402
from bench.loadtest import measure, plan, start_service  # noqa: E402
from bench.loadtest_report import analyse  # noqa: E402
from bench.probe_poller import OLD_READINESS_PATH, render_probes  # noqa: E402
from bench.targets import judged  # noqa: E402

PHASE = "overload"  # the load test's phase this run consists of
TARGET_NAMES = {"/readyz": "readyz_p99_ms", "/livez": "livez_p99_ms"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.probes", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admission-limit", type=int, default=64, help="SUMMARIZER_MAX_PENDING, per API worker (default 64)")
    parser.add_argument("--users", type=int, help="closed-loop users (default: twice the pod's admission limit, all API workers)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds under load (default 60)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds of probes at rest first (default 10)")
    parser.add_argument("--model", help="stored model (default: $SUMMARIZER_MODEL or dialogue-bart-small:latest)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="setting for the started service, e.g. SUMMARIZER_ONNX_THREADS=1 (repeatable)")
    parser.add_argument("--out", help="results directory (default: bench/results)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the service's and locust's logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.admission_limit < 1:
        raise SystemExit(f"--admission-limit must be at least 1, e.g. 16; got {args.admission_limit}")
    env = {**dict(item.split("=", 1) for item in args.env), "SUMMARIZER_MAX_PENDING": str(args.admission_limit)}
    warning = busy_warning()
    if warning:
        log(f"warning: {warning}")
    logs = Path(tempfile.mkdtemp(prefix="probes-"))
    server, model, max_pending = start_service(args.model, env, logs)  # the pod's: per API worker x workers
    users = args.users or 2 * max_pending
    load_args = loadtest_parser().parse_args(
        ["--ramp-s", "0", "--hold-s", "0", "--overload-users", str(users), "--overload-s", str(args.seconds),
         "--idle-s", str(args.idle_s), "--probe-old-readiness"])
    try:
        config = plan(load_args, max_pending, logs)
        measured = measure(server.url, config, logs)
    finally:
        server.stop()
    load = analyse(measured["records"], config, measured["probe_records"], measured["load_started"])
    report = summarize(load, users, max_pending, args.seconds)
    # every probe, its time relative to the load's start: to see when the slow ones happened
    report["probe_records"] = [{**r, "t_load_s": round(r["t"] - measured["load_started"], 3)}
                               for r in measured["probe_records"]]
    report.update({"created": now_iso(), "git": git_revision(),
                   "command": "python -m bench.probes " + " ".join(sys.argv[1:] if argv is None else argv),
                   "machine": machine_info(), "busy_warning": warning, "model": model, "service_env": env,
                   "cold_start_s": server.ready_after_s})
    publish("probes", report, args.out, render(report), logs, args.keep_logs)
    return 0


def summarize(load: dict, users: int, admission_limit: int, seconds: float) -> dict:
    """The probes per phase, the load they were taken under, and the verdict of each target."""
    under_load = (load["probes"] or {}).get(PHASE, {})
    targets = {path: {"p99_ms": under_load.get(path, {}).get("p99_ms"),
                      **judged(name, under_load.get(path, {}).get("p99_ms"))}
               for path, name in TARGET_NAMES.items()}
    requests = load["phases"][PHASE]
    return {"admission_limit": admission_limit, "users": users, "seconds": seconds, "probes": load["probes"],
            "targets": targets, "old_readiness_path": OLD_READINESS_PATH,
            "load": {"requests": requests["requests"], "answered_per_s": requests["throughput_rps"],
                     "latency": requests["latency"], "outcomes": requests["outcomes"],
                     "rejections": requests.get("rejections")}}


def render(report: dict) -> str:
    load = report["load"]
    machine = report["machine"]
    lines = [render_probes(report["probes"], f"health probes: {report['model']}, admission limit "
                                             f"{report['admission_limit']}, {report['users']} users for "
                                             f"{report['seconds']:.0f} s ({machine.get('cpus')} CPUs, load "
                                             f"average {machine.get('load_average')})").rstrip()]
    lines.append(f"{OLD_READINESS_PATH} asks both backends at every call, as /readyz did before it read the last "
                 "known state (serving/health.py): the old behaviour, same run")
    rate = load["answered_per_s"]
    lines.append(f"load: {load['requests']} requests, {rate or 0:.1f} answered/s, outcomes {load['outcomes']}")
    for path, t in report["targets"].items():
        met = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        p99 = "-" if t["p99_ms"] is None else f"{t['p99_ms']:.1f} ms"
        lines.append(f"target {path} p99 <= {t['target']:.0f} ms under load: {p99}, {met}")
    if report.get("busy_warning"):
        lines.append(f"warning: {report['busy_warning']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
