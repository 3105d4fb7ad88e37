"""The load test (python -m bench.loadtest) against a real service on the tiny BART, and its analysis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_loadtest_smoke_run_reports_phases_batches_and_cost(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.loadtest", "--model", tiny_model, "--start-users", "2", "--peak-users", "4",
           "--ramp-s", "4", "--hold-s", "4", "--overload-users", "12", "--overload-s", "4", "--idle-s", "2",
           "--env", "SUMMARIZER_MAX_PENDING=4", "--env", "SUMMARIZER_ONNX_THREADS=1",
           "--env", "SUMMARIZER_API_WORKERS=1", "--out", str(out)]  # one worker: 12 users are 3x its 4
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "loadtest-latest.json").read_text())
    assert set(data["phases"]) == {"ramp", "hold", "overload"}
    assert data["phases"]["hold"]["ok"] > 0
    assert data["admission_limit"] == 4
    assert data["model"] == tiny_model  # what the service's /model says, through the client
    overload = data["phases"]["overload"]
    # 12 users against a limit of 4: refusals whose ErrorBody says "overloaded", each with Retry-After
    assert overload["outcomes"].get("503_overloaded", 0) > 0, overload["outcomes"]
    assert overload["rejections"]["with_retry_after"] == 1.0
    assert json.loads(overload["rejections"]["first_body"])["code"] == "overloaded"
    assert data["batch_sizes"]["summarizer_onnx"]["batches"] > 0
    assert {r["instance"] for r in data["cost"]["rows"]} and data["cost"]["rows"][0]["usd_per_1k_requests"] > 0
    assert data["cold_start_s"] > 0 and data["memory_after"]["processes"] >= 2
    assert "past capacity:" in proc.stdout
    # /readyz and /livez were probed before the load and in each of its phases
    for phase in ("idle", "ramp", "hold", "overload"):
        assert {path: data["probes"][phase][path]["probes"] > 0 for path in ("/readyz", "/livez")} == \
            {"/readyz": True, "/livez": True}, (phase, data["probes"].get(phase))
    assert "health probes" in proc.stdout


def _records() -> list[dict]:
    records = []
    for i in range(20):
        records.append({"t": i * 0.5, "phase": "ramp", "users": 2, "kind": "short", "status": 200, "latency_s": 0.5,
                        "input_tokens": 100, "output_tokens": 20})
    for i in range(40):
        records.append({"t": 10 + i * 0.25, "phase": "hold", "users": 4, "kind": "long", "status": 200,
                        "latency_s": 1.0, "input_tokens": 300, "output_tokens": 30})
    for i in range(10):
        records.append({"t": 20 + i, "phase": "overload", "users": 8, "kind": "short", "status": 503,
                        "latency_s": 0.01, "reason": "overloaded", "retry_after": "1",
                        "body": '{"code": "overloaded", "message": "service overloaded"}'})
    return records


CONFIG = {"ramp_s": 10.0, "hold_s": 10.0, "overload_s": 10.0, "overload_users": 8}


def test_loadtest_analysis_on_synthetic_records():
    from bench.loadtest_report import analyse, cost_table

    report = analyse(_records(), CONFIG)
    assert report["capacity_rps"] == pytest.approx(4.0)  # 40 answers in the 10 s hold
    assert report["phases"]["hold"]["tokens_per_s"] == pytest.approx(40 * 330 / 10)
    assert report["phases"]["overload"]["outcomes"] == {"503_overloaded": 10}
    assert report["overload_verdict"]["pass"] is True
    assert report["failures_outside_overload_admission"] == {}
    cost = cost_table(report, {"test instance": 3.6})
    assert cost["rows"][0]["usd_per_1k_requests"] == pytest.approx(3.6 / 3600 / 4.0 * 1000)
    assert cost["managed"]["usd_per_1k_requests"] == 1.35


@pytest.mark.parametrize("extra, outcome", [
    ({"status": 500, "error": "boom"}, "500"),
    ({"status": 503, "reason": "unavailable", "retry_after": "5"}, "503_unavailable"),  # no backend answered
    ({"status": 503, "reason": None, "body": "Service Unavailable"}, "503_unparsed"),  # not the service's ErrorBody
    ({"status": 0, "error": "timed out"}, "timeout_or_connection"),
])
def test_a_failure_other_than_an_overloaded_refusal_fails_the_overload_phase(extra, outcome):
    from bench.loadtest_report import analyse

    failure = {"t": 25, "phase": "overload", "users": 8, "kind": "short", "latency_s": 0.1, **extra}
    report = analyse([*_records(), failure], CONFIG)
    assert report["overload_verdict"]["pass"] is False
    assert report["overload_verdict"]["other_failures"] == {outcome: 1}
