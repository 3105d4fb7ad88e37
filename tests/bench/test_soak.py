"""The soak's analysis (bench/soak_report.py) on synthetic runs, and a short real run of ``python -m bench.soak``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.soak_report import analyse, process_growth, render

REPO_ROOT = Path(__file__).resolve().parents[2]
DURATION = 600.0
OUTAGE = (240.0, 360.0)


def samples(rss_at, fds_at=lambda t: 40, pid_at=lambda t: 100, sockets_at=lambda t: 10,
            label="service worker summarizer_onnx"):
    """A sample every 10 s of one process whose RSS (MiB), open files (sockets among them) and pid follow the
    given functions."""
    return [{"t": t, "load_average": 1.0,
             "processes": {label: {"pid": pid_at(t), "rss_mib": rss_at(t), "uss_mib": rss_at(t) / 2,
                                   "fds": fds_at(t) + sockets_at(t), "sockets": sockets_at(t)}}}
            for t in range(0, int(DURATION) + 1, 10)]


def records(latency_at=lambda t: 0.5, failed_at=lambda t: False):
    """A request started every second, its latency and success as the functions say."""
    return [{"t": float(t), "latency_s": latency_at(t), "ok": not failed_at(t), "error": "HTTP 503 unavailable"
             if failed_at(t) else None} for t in range(int(DURATION))]


def test_memory_that_grows_during_warm_up_then_stays_flat_passes():
    # 300 MiB at start, 500 MiB by the end of warm-up (models, arenas), then within 1 %.
    flat = samples(lambda t: 300 + 200 * min(t, 100) / 100 + (t % 20 == 0) * 4)
    row = process_growth(flat, DURATION)["service worker summarizer_onnx"]
    assert 500 <= row["rss_mib_after_warmup"] <= 504 and 500 <= row["rss_mib_end"] <= 504
    assert abs(row["rss_growth"]) < 0.01 and row["fd_growth"] == 0 and not row["respawned"]
    report = analyse(records(), flat, DURATION, 4.0, OUTAGE, spans_after_restart=10)
    assert report["passed"], render_for_test(report)


def test_memory_that_keeps_growing_after_warm_up_fails():
    leaking = samples(lambda t: 500 + 0.1 * t)  # 0.1 MiB/s: 517.5 -> 554.5 MiB between the windows' medians, +7 %
    report = analyse(records(), leaking, DURATION, 4.0, OUTAGE)
    row = report["processes"]["service worker summarizer_onnx"]
    assert 0.07 < row["rss_growth"] < 0.072 and abs(row["rss_trend_mib_per_min"] - 6.0) < 1e-6
    memory = [c for c in report["criteria"] if "memory flat" in c["name"]]
    assert [c["passed"] for c in memory] == [False] and not report["passed"]


def test_open_files_that_keep_growing_fail_and_a_respawned_worker_fails():
    report = analyse(records(), samples(lambda t: 500, fds_at=lambda t: 40 + t // 60), DURATION, 4.0, None)
    fds = [c for c in report["criteria"] if "file-descriptor" in c["name"]]
    assert report["processes"]["service worker summarizer_onnx"]["fd_growth"] == 6.5  # 42.5 -> 49
    # Connections follow the requests in flight: sockets that come and go (here 40 to 49) are no leak ...
    wobbling = analyse(records(), samples(lambda t: 500, sockets_at=lambda t: 40 + (t // 10) % 10), DURATION, 4.0,
                       None)
    assert [c["passed"] for c in wobbling["criteria"] if "file-descriptor" in c["name"]] == [True]
    # ... sockets that keep growing are
    piling = analyse(records(), samples(lambda t: 500, sockets_at=lambda t: 40 + t // 20), DURATION, 4.0, None)
    assert piling["processes"]["service worker summarizer_onnx"]["socket_growth"] == 18.5
    assert [c["passed"] for c in piling["criteria"] if "file-descriptor" in c["name"]] == [False]
    assert [c["passed"] for c in fds] == [False]
    respawn = samples(lambda t: 500, pid_at=lambda t: 100 if t < 300 else 200)
    respawned = analyse(records(), respawn, DURATION, 4.0, None)
    assert respawned["processes"]["service worker summarizer_onnx"]["respawned"]
    assert not respawned["passed"]


def test_errors_and_slow_requests_during_the_outage_are_attributed_to_it():
    slow_outage = records(latency_at=lambda t: 5.0 if OUTAGE[0] <= t < OUTAGE[1] else 0.5,
                          failed_at=lambda t: t == 300)
    report = analyse(slow_outage, samples(lambda t: 500), DURATION, 4.0, OUTAGE, spans_after_restart=0)
    col = report["collector"]
    assert col["during_outage"]["requests"] == 120 and col["during_outage"]["errors"] == 1
    assert col["outside_outage"]["requests"] == 600 - 120 - 120  # after warm-up (120 s), outside the outage
    assert col["outside_outage"]["p99_s"] == 0.5 and col["during_outage"]["p99_s"] == 5.0
    assert report["errors"] == 1 and report["error_kinds"] == {"HTTP 503 unavailable": 1}
    failed = {c["name"] for c in report["criteria"] if not c["passed"]}
    assert failed == {"requests answered, 0 errors", "p99 under the alert threshold (4 s)",
                      "collector stopped and restarted: no errors, p99 under the threshold meanwhile",
                      "telemetry resumed after the collector's restart"}


def render_for_test(report: dict) -> str:
    return render({**report, "config": {"clients": 1, "think_s": 1.0}, "duration_s": DURATION, "model": "m",
                   "throughput_rps": 1.0})


def test_the_table_has_one_verdict_line_per_criterion():
    report = analyse(records(), samples(lambda t: 500), DURATION, 4.0, OUTAGE, spans_after_restart=3)
    table = render_for_test(report)
    verdict_lines = [line for line in table.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert len(verdict_lines) == len(report["criteria"]) == 6
    assert table.rstrip().endswith("soak: PASS")


def test_a_short_soak_of_the_tiny_model_reports_every_criterion(tiny_model, bentoml_home, tmp_path):
    """2 clients for 15 s through the real script: service, collector outage, samples, report."""
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.soak", "--model", tiny_model, "--minutes", "0.25", "--clients", "2",
           "--think-s", "0.5", "--sample-s", "1", "--env", "SUMMARIZER_ONNX_THREADS=1", "--out", str(out)]
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    data = json.loads((out / "soak.json").read_text())
    assert data["requests"] > 5 and data["errors"] == 0, proc.stderr[-3000:]
    assert data["collector"]["outage_s"] is not None and data["collector"]["during_outage"]["requests"] > 0
    assert data["spans_after_restart"] > 0  # the service's exporter reconnected to the restarted collector
    workers = {label for label in data["processes"] if label.startswith("service worker")}
    assert workers == {"service worker dialogue_summarizer", "service worker dialogue_summarizer #2",
                       "service worker summarizer_onnx", "service worker summarizer_torch"}  # 2 API workers
    # 15 s is too short for the memory verdicts to mean much; the exit status must agree with them all the same
    assert proc.returncode == (0 if data["passed"] else 1), proc.stderr[-3000:]
    assert proc.stdout.count("\nPASS ") + proc.stdout.count("\nFAIL ") == len(data["criteria"])
