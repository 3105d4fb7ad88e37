"""Load test: locust (headless) against a real ``bentoml serve``; limits, latency, errors, batch sizes, cost.

    python -m bench.loadtest                      full: 10 -> 50 users over 180 s, 60 s at 50, 60 s past capacity
    python -m bench.loadtest --quick              smoke: 10 -> 20 users over 20 s, 10 s hold, 15 s past capacity
    python -m bench.loadtest --url http://127.0.0.1:3000   against a service already running (loopback only)

Unless ``--url`` is given, the service is started here with the shipped settings (``--env KEY=VALUE`` to
change one), on the model in BentoML's store (default ``dialogue-bart-small:latest``), on a free loopback
port, with a BentoML home of its own (so no other server's /metrics is touched).

Users post DialogSum test dialogues, a mix of short and long ones (``--long-share`` of them from the longer
half), one after another (``--think-s`` between). Past the peak, ``--overload-users`` (default: twice the
service's admission limit, ``SUMMARIZER_MAX_PENDING``) must get fast 503s with ``Retry-After`` and never a
timeout or a 500. Reported per phase: throughput, p50/p95/p99 latency, errors by kind, the batch sizes
BentoML formed (its ``adaptive_batch_size`` histogram), and the cost of 1,000 requests and 1,000 tokens at
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

from bench.common import (REPO_ROOT, busy_warning, git_revision, latency_stats, machine_info,  # noqa: E402
                          now_iso, percentile, short_and_long, write_results)

# On-demand list prices (USD per hour, Linux, US regions) of instances with 2 vCPUs like the machine the
# throughput is measured on; check current pricing. Override or add with --price NAME=USD_PER_HOUR.
DEFAULT_PRICES = {
    "AWS c7i.large (2 vCPU, 4 GiB)": 0.08925,
    "AWS m7i.large (2 vCPU, 8 GiB)": 0.1008,
    "GCP e2-standard-2 (2 vCPU, 8 GiB)": 0.067,
    "Azure D2s v5 (2 vCPU, 8 GiB)": 0.096,
}
# The managed endpoint the issue compares with (its figures, as given).
MANAGED = {"name": "managed endpoint (figures as given in issue 6)", "usd_per_hour": 0.27,
           "seconds_per_request": 3.6, "usd_per_1k_requests": 1.35}
FAST_503_S = 1.0  # a 503 past capacity must come back within this (admission control answers at once)


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
                        help="users past capacity (default: 2 x SUMMARIZER_MAX_PENDING; 0 skips the phase)")
    parser.add_argument("--overload-s", type=float, help="seconds past capacity (default 60; quick 15)")
    parser.add_argument("--long-share", type=float, default=0.3, help="share of long dialogues (default 0.3)")
    parser.add_argument("--think-s", type=float, default=0.0, help="seconds a user waits between requests")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="client timeout per request")
    parser.add_argument("--price", action="append", default=[], metavar="NAME=USD_PER_HOUR",
                        help="instance price for the cost table (repeatable; replaces the defaults)")
    parser.add_argument("--out", help="results directory (default: bench/results)")
    parser.add_argument("--keep-logs", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quick = args.quick
    peak = args.peak_users or (20 if quick else 50)
    ramp_s = args.ramp_s if args.ramp_s is not None else (20.0 if quick else 180.0)
    hold_s = args.hold_s if args.hold_s is not None else (10.0 if quick else 60.0)
    overload_s = args.overload_s if args.overload_s is not None else (15.0 if quick else 60.0)
    env = dict(item.split("=", 1) for item in args.env)
    prices = _prices(args.price)
    logs = Path(tempfile.mkdtemp(prefix="loadtest-"))
    warning = busy_warning()
    if warning:
        log(f"warning: {warning}")
    server = None
    try:
        if args.url:
            from bench.client import check_loopback

            check_loopback(args.url)
            url = args.url.rstrip("/")
            max_pending = int(env.get("SUMMARIZER_MAX_PENDING") or 64)
            model = _served_model(url)
        else:
            from bench.servers import summarizer_server
            from serving.config import DEFAULT_MODEL_NAME

            model = args.model or os.environ.get("SUMMARIZER_MODEL") or f"{DEFAULT_MODEL_NAME}:latest"
            server = summarizer_server("loadtest-service", model, logs, **env)
            log(f"starting the service ({model}) ...")
            server.start()
            url = server.url
            log(f"ready in {server.cold_start_s:.1f} s on {url}")
            max_pending = _config_with(env).max_pending_requests
            model = _served_model(url) or model
        overload_users = args.overload_users if args.overload_users is not None else 2 * max_pending
        short, long_ = short_and_long()
        dialogues = logs / "dialogues.json"
        dialogues.write_text(json.dumps({"short": short, "long": long_}))
        events_path = logs / "events.json"
        config = {"start_users": args.start_users, "peak_users": peak, "ramp_s": ramp_s, "hold_s": hold_s,
                  "overload_users": overload_users, "overload_s": overload_s, "long_share": args.long_share,
                  "think_s": args.think_s, "timeout_s": args.timeout_s, "dialogues": str(dialogues),
                  "events": str(events_path), "spawn_rate": max(10, overload_users)}
        metrics_before = _metrics(url)
        log(f"locust: {args.start_users} -> {peak} users over {ramp_s:.0f} s, {hold_s:.0f} s at {peak}, "
            f"then {overload_users} users for {overload_s:.0f} s (admission limit {max_pending})")
        started = time.perf_counter()
        locust = _run_locust(url, config, logs)
        duration = time.perf_counter() - started
        metrics_after = _metrics(url)
        records = json.loads(events_path.read_text())["records"] if events_path.exists() else []
        if not records:
            raise RuntimeError(f"locust recorded no requests (exit {locust.returncode}):\n"
                               f"{(logs / 'locust.log').read_text()[-3000:]}")
        memory = server.memory() if server else None
        service_log_errors = _log_errors(server) if server else None
    finally:
        if server:
            server.stop()
    from bench.run import _batch_histogram, _histogram_delta

    report = analyse(records, config)
    report.update({
        "created": now_iso(), "git": git_revision(), "command": "python -m bench.loadtest " + " ".join(sys.argv[1:]),
        "mode": "quick" if quick else "full", "machine": machine_info(), "busy_warning": warning,
        "model": model, "url": url if args.url else "started here", "service_env": env,
        "admission_limit": max_pending, "config": {k: v for k, v in config.items() if k not in ("dialogues", "events")},
        "duration_s": round(duration, 1), "locust_exit_code": locust.returncode,
        "batch_sizes": _histogram_delta(_batch_histogram(metrics_before), _batch_histogram(metrics_after)),
        "memory_after": memory, "cold_start_s": server.cold_start_s if server else None,
        "service_log_errors": service_log_errors,
    })
    report["cost"] = cost_table(report, prices)
    path = write_results("loadtest", report, args.out)
    print(render(report))
    print(f"\nresults: {path}")
    if args.keep_logs:
        print(f"logs: {logs}")
    else:
        import shutil

        shutil.rmtree(logs, ignore_errors=True)
    return 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _config_with(env: dict):
    from serving.config import ServingConfig

    saved = {k: os.environ.get(k) for k in env}
    try:
        os.environ.update(env)
        return ServingConfig.from_env()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _prices(items: list[str]) -> dict[str, float]:
    if not items:
        return dict(DEFAULT_PRICES)
    out = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep:
            raise SystemExit(f"--price expects NAME=USD_PER_HOUR, got {item!r}")
        out[name] = float(value)
    return out


def _served_model(url: str) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/model", timeout=10) as resp:
            return json.loads(resp.read()).get("model")
    except (OSError, ValueError):
        return None


def _metrics(url: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
            return resp.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _run_locust(url: str, config: dict, logs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOADTEST_CONFIG": json.dumps(config)}
    argv = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "bench" / "locustfile.py"), "--headless",
            "--host", url, "--only-summary", "--loglevel", "WARNING", "--csv", str(logs / "locust"),
            "--exit-code-on-error", "0"]
    total = config["ramp_s"] + config["hold_s"] + (config["overload_s"] if config["overload_users"] else 0)
    with open(logs / "locust.log", "wb") as out:
        return subprocess.run(argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=total + config["timeout_s"] + 120)


def _log_errors(server) -> dict:
    text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    lines = [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]
    return {"count": len(lines), "first": lines[:5]}


# --------------------------------------------------------------------------- analysis


def classify(record: dict) -> str:
    status = record.get("status", 0)
    if status == 200:
        return "ok"
    if status == 503:
        return "503_admission" if record.get("reason") == "admission" else "503_backend"
    if status == 0:
        return "timeout_or_connection"
    if status >= 500:
        return f"{status}"
    return f"{status}"


def phase_stats(records: list[dict], seconds: float) -> dict:
    ok = [r for r in records if r.get("status") == 200]
    kinds: dict[str, int] = {}
    for r in records:
        kinds[classify(r)] = kinds.get(classify(r), 0) + 1
    rejected = [r for r in records if r.get("status") == 503 and r.get("reason") == "admission"]
    failed_backend = [r for r in records if r.get("status") == 503 and r.get("reason") != "admission"]
    tokens_in = sum(r.get("input_tokens", 0) for r in ok)
    tokens_out = sum(r.get("output_tokens", 0) for r in ok)
    out = {"requests": len(records), "ok": len(ok), "seconds": round(seconds, 1),
           "throughput_rps": len(ok) / seconds if seconds > 0 else None,
           "tokens_per_s": (tokens_in + tokens_out) / seconds if seconds > 0 else None,
           "output_tokens_per_s": tokens_out / seconds if seconds > 0 else None,
           "mean_input_tokens": tokens_in / len(ok) if ok else None,
           "mean_output_tokens": tokens_out / len(ok) if ok else None,
           "latency": latency_stats([r["latency_s"] for r in ok]),
           "latency_by_kind": {k: latency_stats([r["latency_s"] for r in ok if r["kind"] == k])
                               for k in ("short", "long")},
           "outcomes": kinds,
           "users": [min((r["users"] for r in records), default=0), max((r["users"] for r in records), default=0)]}
    if rejected:
        lat = [r["latency_s"] for r in rejected]
        out["rejections"] = {"count": len(rejected), "p50_s": percentile(lat, 50), "p99_s": percentile(lat, 99),
                             "max_s": max(lat),
                             "with_retry_after": sum(1 for r in rejected if r.get("retry_after")) / len(rejected),
                             "first_body": rejected[0].get("body")}
    if failed_backend:
        lat = [r["latency_s"] for r in failed_backend]
        out["backend_failures"] = {"count": len(failed_backend), "p50_s": percentile(lat, 50),
                                   "p99_s": percentile(lat, 99), "first_body": failed_backend[0].get("body")}
    errors = [r for r in records if r.get("status") not in (200, 503)]
    if errors:
        out["errors"] = {"count": len(errors), "first": [r.get("error") for r in errors[:3]]}
    out["stale_connections_retried"] = sum(1 for r in records if r.get("stale_connection_retried"))
    return out


def analyse(records: list[dict], config: dict) -> dict:
    bounds = {"ramp": (0.0, config["ramp_s"]),
              "hold": (config["ramp_s"], config["ramp_s"] + config["hold_s"]),
              "overload": (config["ramp_s"] + config["hold_s"],
                           config["ramp_s"] + config["hold_s"] + config["overload_s"])}
    phases = {}
    for name, (lo, hi) in bounds.items():
        chosen = [r for r in records if r["phase"] == name]
        if chosen or (name != "overload" or config["overload_users"]):
            phases[name] = phase_stats(chosen, hi - lo)
    windows = []
    step = 10.0 if config["ramp_s"] + config["hold_s"] > 60 else 5.0
    end = max(r["t"] + r["latency_s"] for r in records)
    t = 0.0
    while t < end:
        done = [r for r in records if t <= r["t"] + r["latency_s"] < t + step]
        ok = [r for r in done if r.get("status") == 200]
        windows.append({"t": t, "users": max((r["users"] for r in done), default=None), "completed": len(done),
                        "ok_rps": len(ok) / step, "p50_s": percentile([r["latency_s"] for r in ok], 50) if ok else None,
                        "rejected": sum(1 for r in done if r.get("status") == 503)})
        t += step
    capacity = phases.get("hold", {}).get("throughput_rps")
    overload = phases.get("overload")
    verdict = None
    if overload and config["overload_users"]:
        bad = {k: v for k, v in overload["outcomes"].items() if k not in ("ok", "503_admission")}
        rej = overload.get("rejections") or {}
        fast = rej.get("p99_s") is not None and rej["p99_s"] <= FAST_503_S
        verdict = {"rejected_with_503": rej.get("count", 0), "fast_503_p99_s": rej.get("p99_s"),
                   "retry_after_share": rej.get("with_retry_after"), "other_failures": bad,
                   "pass": bool(rej.get("count")) and fast and rej.get("with_retry_after") == 1.0 and not bad,
                   "rule": f"past capacity: 503s with Retry-After within {FAST_503_S:g} s; no timeouts, no 500s, "
                           "no 503 from a failed backend"}
    all_bad = {}
    for name, p in phases.items():
        for k, v in p["outcomes"].items():
            if k != "ok" and not (name == "overload" and k == "503_admission"):
                all_bad[f"{name}:{k}"] = v
    return {"phases": phases, "windows": windows, "capacity_rps": capacity, "overload_verdict": verdict,
            "failures_outside_overload_admission": all_bad, "requests_total": len(records)}


def cost_table(report: dict, prices: dict[str, float]) -> dict:
    """USD per 1,000 requests and per 1,000 tokens at the throughput measured at the peak (hold phase):
    a fully used instance; at lower use the cost per request rises in proportion."""
    hold = report["phases"].get("hold") or {}
    rps, tps, out_tps = hold.get("throughput_rps"), hold.get("tokens_per_s"), hold.get("output_tokens_per_s")
    rows = []
    for name, usd_h in prices.items():
        per_s = usd_h / 3600.0
        rows.append({"instance": name, "usd_per_hour": usd_h,
                     "usd_per_1k_requests": per_s / rps * 1000 if rps else None,
                     "usd_per_1k_tokens": per_s / tps * 1000 if tps else None,
                     "usd_per_1k_output_tokens": per_s / out_tps * 1000 if out_tps else None})
    managed = dict(MANAGED)
    managed["usd_per_1k_requests_if_back_to_back"] = MANAGED["usd_per_hour"] / 3600 * MANAGED["seconds_per_request"] * 1000
    return {"at_throughput_rps": rps, "tokens_per_s": tps, "rows": rows, "managed": managed,
            "note": "at the peak-phase throughput of this machine (full utilisation); on-demand list prices of "
                    "2-vCPU instances (USD/hour, Linux, US regions) stated in bench/loadtest.py; tokens = input + "
                    "output tokens of the model's tokenizer"}


def render(report: dict) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    buf = StringIO()
    console = Console(file=buf, width=150, force_terminal=False)
    m = report["machine"]
    table = Table(title=escape(f"load test: {report['model']} on {m.get('processor')} ({m.get('cpus')} CPUs), "
                               f"{report['mode']} run, admission limit {report['admission_limit']}"),
                  title_justify="left")
    for col in ("phase", "users", "requests", "ok/s", "p50", "p95", "p99", "outcomes", "admission 503 p99 / Retry-After"):
        table.add_column(col)
    for name, p in report["phases"].items():
        lat = p["latency"]
        rej = p.get("rejections")
        table.add_row(name, f"{p['users'][0]}-{p['users'][1]}", str(p["requests"]),
                      f"{p['throughput_rps']:.2f}" if p["throughput_rps"] is not None else "-",
                      _s(lat["p50_s"]), _s(lat["p95_s"]), _s(lat["p99_s"]),
                      escape(", ".join(f"{k} {v}" for k, v in sorted(p["outcomes"].items()))),
                      f"{rej['p99_s'] * 1000:.0f} ms / {rej['with_retry_after'] * 100:.0f}%" if rej else "-")
    console.print(table)
    v = report.get("overload_verdict")
    if v:
        console.print(escape(f"past capacity: {'PASS' if v['pass'] else 'FAIL'} ({v['rule']}); "
                             f"{v['rejected_with_503']} fast 503s, other failures {v['other_failures'] or 'none'}"))
    if report["failures_outside_overload_admission"]:
        console.print(escape(f"failures (other than admission 503s past capacity): "
                             f"{report['failures_outside_overload_admission']}"))
    for service, b in (report.get("batch_sizes") or {}).items():
        console.print(escape(f"batches formed by {service}: {b['batches']:.0f}, mean size {b['mean_batch_size']:.1f}, "
                             f"cumulative buckets {b['cumulative_buckets']}"))
    cost = report["cost"]
    ct = Table(title=escape(f"cost at {cost['at_throughput_rps'] or 0:.2f} requests/s "
                            f"({cost['tokens_per_s'] or 0:.0f} tokens/s), full utilisation"), title_justify="left")
    for col in ("instance", "USD/hour", "USD per 1k requests", "USD per 1k tokens", "USD per 1k output tokens"):
        ct.add_column(col)
    for row in cost["rows"]:
        ct.add_row(escape(row["instance"]), f"{row['usd_per_hour']:.4f}", _usd(row["usd_per_1k_requests"]),
                   _usd(row["usd_per_1k_tokens"]), _usd(row["usd_per_1k_output_tokens"]))
    mg = cost["managed"]
    ct.add_row(escape(mg["name"]), f"{mg['usd_per_hour']:.2f}", f"{mg['usd_per_1k_requests']:.2f} (as given)", "-",
               "-")
    console.print(ct)
    if report.get("busy_warning"):
        console.print(escape(f"warning: {report['busy_warning']}"))
    return buf.getvalue()


def _s(value) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _usd(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if value >= 0.01 else f"{value:.6f}"


if __name__ == "__main__":
    sys.exit(main())
