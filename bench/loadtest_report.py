"""The load test's report, from the requests locust recorded (bench/locustfile.py): per phase throughput,
latency, outcomes and 503s; throughput over time; whether the service refused fast past capacity; the
health probes' latency per phase (bench/probe_poller.py); and the cost of 1,000 requests and 1,000 tokens
at the measured throughput.
"""

from __future__ import annotations

from bench.probe_poller import probes_by_phase, render_probes
from bench.stats import latency_stats, percentile
from serving.errors import ErrorCode

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
OVERLOADED = f"503_{ErrorCode.OVERLOADED.value}"  # the outcome of a refusal by admission control


def classify(record: dict) -> str:
    """The outcome of one request: 'ok', '503_<ErrorBody code>' ('503_unparsed' for another 503 body),
    'timeout_or_connection' (no answer), else the HTTP status."""
    status = record.get("status", 0)
    if status == 200:
        return "ok"
    if status == 503:
        return f"503_{record.get('reason') or 'unparsed'}"
    if status == 0:
        return "timeout_or_connection"
    return str(status)


def refusals(records: list[dict]) -> dict:
    """The 503s of admission control (the service overloaded): how fast, and whether they said when to retry."""
    latencies = [r["latency_s"] for r in records]
    return {"count": len(records), "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99),
            "max_s": max(latencies),
            "with_retry_after": sum(1 for r in records if r.get("retry_after")) / len(records),
            "first_body": records[0].get("body")}


def phase_stats(records: list[dict], seconds: float) -> dict:
    ok = [r for r in records if r.get("status") == 200]
    outcomes: dict[str, int] = {}
    for r in records:
        outcomes[classify(r)] = outcomes.get(classify(r), 0) + 1
    rejected = [r for r in records if classify(r) == OVERLOADED]
    other_503 = [r for r in records if r.get("status") == 503 and classify(r) != OVERLOADED]
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
           "outcomes": outcomes,
           "users": [min((r["users"] for r in records), default=0), max((r["users"] for r in records), default=0)]}
    if rejected:
        out["rejections"] = refusals(rejected)
    if other_503:  # no backend could answer (ErrorReason.UNAVAILABLE), or a 503 not from the service's code
        lat = [r["latency_s"] for r in other_503]
        out["backend_failures"] = {"count": len(other_503), "p50_s": percentile(lat, 50),
                                   "p99_s": percentile(lat, 99), "first_body": other_503[0].get("body")}
    errors = [r for r in records if r.get("status") not in (200, 503)]
    if errors:
        out["errors"] = {"count": len(errors), "first": [r.get("error") for r in errors[:3]]}
    out["stale_connections_retried"] = sum(1 for r in records if r.get("stale_connection_retried"))
    return out


def windows(records: list[dict], step: float) -> list[dict]:
    """Requests completed per ``step`` seconds: answered per second, their p50, 503s, users."""
    out = []
    end = max(r["t"] + r["latency_s"] for r in records)
    t = 0.0
    while t < end:
        done = [r for r in records if t <= r["t"] + r["latency_s"] < t + step]
        ok = [r["latency_s"] for r in done if r.get("status") == 200]
        out.append({"t": t, "users": max((r["users"] for r in done), default=None), "completed": len(done),
                    "ok_rps": len(ok) / step, "p50_s": percentile(ok, 50),
                    "rejected": sum(1 for r in done if r.get("status") == 503)})
        t += step
    return out


def overload_verdict(overload: dict) -> dict:
    """Past capacity the service must refuse with fast 503s that carry Retry-After, and fail nothing else."""
    bad = {k: v for k, v in overload["outcomes"].items() if k not in ("ok", OVERLOADED)}
    rej = overload.get("rejections") or {}
    fast = rej.get("p99_s") is not None and rej["p99_s"] <= FAST_503_S
    return {"rejected_with_503": rej.get("count", 0), "fast_503_p99_s": rej.get("p99_s"),
            "retry_after_share": rej.get("with_retry_after"), "other_failures": bad,
            "pass": bool(rej.get("count")) and fast and rej.get("with_retry_after") == 1.0 and not bad,
            "rule": f"past capacity: 503s with Retry-After within {FAST_503_S:g} s; no timeouts, no 500s, "
                    "no 503 from a failed backend"}


def phase_bounds(config: dict) -> dict[str, tuple[float, float]]:
    """Each phase's start and end, in seconds since the load started (bench/locustfile.py's shape)."""
    ramp, hold = config["ramp_s"], config["hold_s"]
    overload = config["overload_s"] if config["overload_users"] else 0.0
    return {"ramp": (0.0, ramp), "hold": (ramp, ramp + hold), "overload": (ramp + hold, ramp + hold + overload)}


def analyse(records: list[dict], config: dict, probe_records: list[dict] | None = None,
            load_started: float | None = None) -> dict:
    """The report of one run: ``records`` from locust; ``probe_records`` (bench/probe_poller.py) are put in
    phases by their wall time against ``load_started``, locust's start."""
    ramp, hold = config["ramp_s"], config["hold_s"]
    bounds = phase_bounds(config)
    phases = {}
    for name, (lo, hi) in bounds.items():
        chosen = [r for r in records if r["phase"] == name]
        if chosen or (name != "overload" or config["overload_users"]):
            phases[name] = phase_stats(chosen, hi - lo)
    overload = phases.get("overload")
    verdict = overload_verdict(overload) if overload and config["overload_users"] else None
    all_bad = {}
    for name, p in phases.items():
        for k, v in p["outcomes"].items():
            if k != "ok" and not (name == "overload" and k == OVERLOADED):
                all_bad[f"{name}:{k}"] = v
    probes = probes_by_phase(probe_records, load_started, bounds) if probe_records else None
    return {"phases": phases, "probes": probes, "windows": windows(records, 10.0 if ramp + hold > 60 else 5.0),
            "capacity_rps": phases.get("hold", {}).get("throughput_rps"), "overload_verdict": verdict,
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
    managed["usd_per_1k_requests_if_back_to_back"] = (MANAGED["usd_per_hour"] / 3600 * MANAGED["seconds_per_request"]
                                                      * 1000)
    return {"at_throughput_rps": rps, "tokens_per_s": tps, "rows": rows, "managed": managed,
            "note": "at the peak-phase throughput of this machine (full utilisation); on-demand list prices of "
                    "2-vCPU instances (USD/hour, Linux, US regions) stated in bench/loadtest_report.py; "
                    "tokens = input + output tokens of the model's tokenizer"}


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
    for col in ("phase", "users", "requests", "ok/s", "p50", "p95", "p99", "outcomes",
                "admission 503 p99 / Retry-After"):
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
    if report.get("probes"):
        buf.write(render_probes(report["probes"], "health probes (a new connection each, every 0.5 s, 1 s timeout), "
                                                  "by phase of the load"))
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

