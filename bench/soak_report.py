"""The soak's analysis (bench/soak.py runs it): from the requests and the 10-second samples of the serve tree,
each criterion of the soak with its figures and a PASS/FAIL verdict.

Windows are fractions of the run: warm-up is the first ``WARMUP`` of it; a process's memory and open files
"after warm-up" are the median of its samples in [WARMUP, WARMUP + WINDOW), "at the end" the median of the
last WINDOW. Medians of a fifth of the run each (12 samples in 10 minutes): the ONNX worker's memory follows
the batch it runs (its arena is handed back after each run), 450-660 MiB within a minute under a full queue,
so one sample, or the median of a few, measures the batches of that moment rather than a trend. The
collector is down between its stop and its restart (after the first window, before the last); latency
there is compared with the rest of the run after warm-up.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.common import fmt
from bench.stats import latency_stats, median

WARMUP = 0.2  # the first fifth of the run: models load their pages, arenas and caches grow to their size
WINDOW = 0.2  # a fifth of the run on each side of the memory and open-files comparison
MAX_MEMORY_GROWTH = 0.05  # the issue: every process's memory flat after warm-up, < 5 % growth
# Open files other than sockets (files, pipes, eventfds) do not follow the load: 2 more at most. Sockets are
# connections (each client's, the API worker's to the backends) and follow the requests in flight, which differ
# between two windows on a noisy machine (measured: 44 -> 41, 42 -> 45); a leaked connection per request or per
# error would add hundreds in a soak. Sockets may differ by 5 or 10 %, the larger.
MAX_FD_GROWTH = 2
MAX_SOCKET_GROWTH = 5
MAX_SOCKET_GROWTH_SHARE = 0.10


def _window(samples: Sequence[dict], start: float, end: float | None, duration: float) -> list[dict]:
    """Samples taken from ``start`` to before ``end`` (fractions of ``duration``; None: to the last sample)."""
    return [s for s in samples if start * duration <= s["t"] and (end is None or s["t"] < end * duration)]


def process_growth(samples: Sequence[dict], duration: float) -> dict[str, dict]:
    """Per process of the serve tree (by its label): RSS, USS and open files after warm-up and at the end.

    ``samples``: [{"t": seconds since the load started, "processes": {label: {"pid", "rss_mib", "uss_mib",
    "fds"}}}]. A label whose pid changed during the run (a worker respawned) is reported as such."""
    after = _window(samples, WARMUP, WARMUP + WINDOW, duration)
    end = _window(samples, 1.0 - WINDOW, None, duration)
    labels = sorted({label for s in samples for label in s["processes"]})
    out = {}
    for label in labels:
        def values(window: Sequence[dict], key: str) -> list[float]:
            return [s["processes"][label][key] for s in window
                    if label in s["processes"] and s["processes"][label].get(key) is not None]

        row: dict = {"pids": sorted({s["processes"][label]["pid"] for s in samples if label in s["processes"]})}
        for key in ("rss_mib", "uss_mib", "fds", "sockets"):
            first, last = median(values(after, key)), median(values(end, key))
            row[f"{key}_after_warmup"], row[f"{key}_end"] = first, last
        if row["sockets_after_warmup"] is not None:  # open files but sockets (samples that count them)
            row["files_after_warmup"] = median([s["processes"][label]["fds"] - s["processes"][label]["sockets"]
                                                for s in after if label in s["processes"]])
            row["files_end"] = median([s["processes"][label]["fds"] - s["processes"][label]["sockets"]
                                       for s in end if label in s["processes"]])
        else:
            row["files_after_warmup"], row["files_end"] = row["fds_after_warmup"], row["fds_end"]
        rss0, rss1 = row["rss_mib_after_warmup"], row["rss_mib_end"]
        row["rss_growth"] = (rss1 - rss0) / rss0 if rss0 and rss1 is not None else None
        uss0, uss1 = row["uss_mib_after_warmup"], row["uss_mib_end"]
        row["uss_growth"] = (uss1 - uss0) / uss0 if uss0 and uss1 is not None else None
        fd0, fd1 = row["files_after_warmup"], row["files_end"]
        row["fd_growth"] = fd1 - fd0 if fd0 is not None and fd1 is not None else None
        so0, so1 = row["sockets_after_warmup"], row["sockets_end"]
        row["socket_growth"] = so1 - so0 if so0 is not None and so1 is not None else None
        row["rss_trend_mib_per_min"] = _trend_per_min(
            [(s["t"], s["processes"][label]["rss_mib"]) for s in samples
             if s["t"] >= WARMUP * duration and label in s["processes"]])
        row["respawned"] = len(row["pids"]) > 1
        out[label] = row
    return out


def _trend_per_min(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) points, in MiB per minute: a leak's steady climb, next to the
    windows' medians (informative; the verdict is the medians')."""
    if len(points) < 3:
        return None
    import numpy as np

    t, values = np.asarray(points, dtype=float).T
    return float(np.polyfit(t, values, 1)[0] * 60.0)


def outage_comparison(records: Sequence[dict], outage: tuple[float, float] | None, duration: float,
                      samples: Sequence[dict] = ()) -> dict:
    """Errors and latency of the requests started while the collector was down against those started after
    warm-up outside the outage, with the machine's median load average in each (samples that have it).
    ``records``: [{"t": start, "latency_s", "ok": bool}]."""
    if outage is None:
        return {"outage_s": None}
    down, up = outage

    def during(t: float) -> bool:
        return down <= t < up

    def summary(rows: Sequence[dict], loads: Sequence[float]) -> dict:
        return {"requests": len(rows), "errors": sum(not r["ok"] for r in rows),
                **latency_stats([r["latency_s"] for r in rows if r["ok"]]), "load_average": median(loads)}
    loaded = [s for s in samples if s.get("load_average") is not None and s["t"] >= WARMUP * duration]
    ins = summary([r for r in records if during(r["t"])], [s["load_average"] for s in loaded if during(s["t"])])
    outs = summary([r for r in records if r["t"] >= WARMUP * duration and not during(r["t"])],
                   [s["load_average"] for s in loaded if not during(s["t"])])
    ratio = (ins["p99_s"] / outs["p99_s"]) if ins["p99_s"] and outs["p99_s"] else None
    return {"outage_s": [round(down, 1), round(up, 1)], "during_outage": ins, "outside_outage": outs,
            "p99_ratio": ratio}


def timeline(records: Sequence[dict], samples: Sequence[dict], duration: float, step_s: float = 60.0) -> list[dict]:
    """Per ``step_s`` of the run: requests started, errors, p50 and p99, and the machine's load average."""
    rows = []
    for start in range(0, int(duration), int(step_s)):
        inside = [r for r in records if start <= r["t"] < start + step_s]
        loads = [s["load_average"] for s in samples
                 if start <= s["t"] < start + step_s and s.get("load_average") is not None]
        stats = latency_stats([r["latency_s"] for r in inside if r["ok"]])
        rows.append({"from_s": start, "requests": len(inside), "errors": sum(not r["ok"] for r in inside),
                     "p50_s": stats["p50_s"], "p99_s": stats["p99_s"], "load_average": median(loads)})
    return rows


def analyse(records: Sequence[dict], samples: Sequence[dict], duration: float, threshold_s: float,
            outage: tuple[float, float] | None, spans_after_restart: int | None = None) -> dict:
    """Every figure of the soak and its verdicts: {"criteria": [{"name", "passed", "detail"}], ...}."""
    errors = [r for r in records if not r["ok"]]
    latency = latency_stats([r["latency_s"] for r in records if r["ok"]])
    processes = process_growth(samples, duration)
    collector = outage_comparison(records, outage, duration, samples)
    criteria = [
        _criterion("requests answered, 0 errors", bool(records) and not errors,
                   f"{len(records)} requests, {len(errors)} errors"
                   + (f" (first: {errors[0].get('error')})" if errors else "")),
        _criterion(f"p99 under the alert threshold ({threshold_s:g} s)",
                   latency["p99_s"] is not None and latency["p99_s"] < threshold_s,
                   f"p50 {fmt(latency['p50_s'])} s, p99 {fmt(latency['p99_s'])} s"),
    ]
    for label, row in processes.items():
        growth = row["rss_growth"]
        criteria.append(_criterion(
            f"{label}: memory flat after warm-up (< {MAX_MEMORY_GROWTH:.0%})",
            growth is not None and growth < MAX_MEMORY_GROWTH and not row["respawned"],
            f"RSS {fmt(row['rss_mib_after_warmup'], 1)} -> {fmt(row['rss_mib_end'], 1)} MiB "
            f"({_pct(growth)}), USS {_pct(row['uss_growth'])}, trend {fmt(row['rss_trend_mib_per_min'])} MiB/min"
            + (" RESPAWNED" if row["respawned"] else "")))
        sockets_ok = row["socket_growth"] is None or row["socket_growth"] <= max(
            MAX_SOCKET_GROWTH, MAX_SOCKET_GROWTH_SHARE * row["sockets_after_warmup"])
        criteria.append(_criterion(
            f"{label}: no file-descriptor growth",
            row["fd_growth"] is not None and row["fd_growth"] <= MAX_FD_GROWTH and sockets_ok,
            f"{fmt(row['fds_after_warmup'], 0)} -> {fmt(row['fds_end'], 0)} open files"
            + (f", of which sockets {fmt(row['sockets_after_warmup'], 0)} -> {fmt(row['sockets_end'], 0)}"
               if row["sockets_after_warmup"] is not None else "")))
    if collector.get("outage_s"):
        ins = collector["during_outage"]
        detail = (f"outage {ins['requests']} requests, {ins['errors']} errors, p99 {fmt(ins['p99_s'])} s; "
                  f"outside {collector['outside_outage']['requests']} requests, "
                  f"{collector['outside_outage']['errors']} errors, p99 {fmt(collector['outside_outage']['p99_s'])} s")
        criteria.append(_criterion(
            "collector stopped and restarted: no errors, p99 under the threshold meanwhile",
            ins["requests"] > 0 and ins["errors"] == 0 and ins["p99_s"] is not None and ins["p99_s"] < threshold_s,
            detail))
        if spans_after_restart is not None:
            criteria.append(_criterion("telemetry resumed after the collector's restart", spans_after_restart > 0,
                                       f"{spans_after_restart} spans received after the restart"))
    return {"requests": len(records), "errors": len(errors),
            "error_kinds": _kinds(errors), "latency": latency, "threshold_s": threshold_s,
            "processes": processes, "collector": collector, "spans_after_restart": spans_after_restart,
            "timeline": timeline(records, samples, duration),
            "criteria": criteria, "passed": all(c["passed"] for c in criteria)}


def _criterion(name: str, passed: bool, detail: str) -> dict:
    return {"name": name, "passed": bool(passed), "detail": detail}


def _kinds(errors: Sequence[dict]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for e in errors:
        kinds[str(e.get("error"))] = kinds.get(str(e.get("error")), 0) + 1
    return kinds


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} %"


def render(report: dict) -> str:
    """The table printed at the end of a soak: the run, each process, then one verdict line per criterion."""
    cfg = report["config"]
    lat = report["latency"]
    lines = [f"soak: {cfg['clients']} clients (think time {cfg['think_s']:g} s, exponential) for "
             f"{report['duration_s'] / 60:.1f} min on {report['model']}; collector down "
             f"{report['collector'].get('outage_s') or '-'} s",
             f"requests {report['requests']}, errors {report['errors']}, {report['throughput_rps']:.2f} requests/s; "
             f"latency p50 {fmt(lat['p50_s'])} s, p99 {fmt(lat['p99_s'])} s, max {fmt(lat['max_s'])} s "
             f"(alert threshold {report['threshold_s']:g} s)", "",
             f"{'process':38} {'RSS after warm-up':>17} {'RSS end':>9} {'growth':>8} {'USS growth':>10} "
             f"{'fds':>9}"]
    for label, row in report["processes"].items():
        lines.append(f"{label[:38]:38} {fmt(row['rss_mib_after_warmup'], 1):>13} MiB {fmt(row['rss_mib_end'], 1):>9} "
                     f"{_pct(row['rss_growth']):>8} {_pct(row['uss_growth']):>10} "
                     f"{fmt(row['fds_after_warmup'], 0):>4}->{fmt(row['fds_end'], 0):<4}")
    col = report["collector"]
    if col.get("outage_s"):
        ins, outs = col["during_outage"], col["outside_outage"]
        lines += ["", f"{'window':27} {'requests':>8} {'errors':>6} {'p50':>7} {'p99':>7} {'load average':>12}",
                  f"{'collector down':27} {ins['requests']:>8} {ins['errors']:>6} {fmt(ins['p50_s']):>7} "
                  f"{fmt(ins['p99_s']):>7} {fmt(ins.get('load_average'), 1):>12}",
                  f"{'after warm-up, collector up':27} {outs['requests']:>8} {outs['errors']:>6} "
                  f"{fmt(outs['p50_s']):>7} {fmt(outs['p99_s']):>7} {fmt(outs.get('load_average'), 1):>12}"]
    if report.get("timeline"):
        lines += ["", f"{'minute':>6} {'requests':>8} {'errors':>6} {'p50':>7} {'p99':>7} {'load average':>12}"]
        lines += [f"{row['from_s'] / 60:>6.0f} {row['requests']:>8} {row['errors']:>6} {fmt(row['p50_s']):>7} "
                  f"{fmt(row['p99_s']):>7} {fmt(row['load_average'], 1):>12}" for row in report["timeline"]]
    lines.append("")
    lines += [f"{'PASS' if c['passed'] else 'FAIL'}  {c['name']}: {c['detail']}" for c in report["criteria"]]
    lines.append(f"\nsoak: {'PASS' if report['passed'] else 'FAIL'}")
    return "\n".join(lines)
