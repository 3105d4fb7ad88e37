"""The capacity table (python -m bench.capacity): its quick mode against a real service on the tiny BART,
checked for structure and internal consistency (not timings), and its planning arithmetic."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def _step(users: int, rps: float, p99: float, errors: int = 0) -> dict:
    return {"users": users, "throughput_rps": rps, "errors": errors, "in_flight_littles_law": float(users),
            "latency": {"p99_s": p99, "mean_s": users / rps}}


def test_quick_mode_reports_steps_capacity_and_replicas_consistently(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.capacity", "--quick", "--model", tiny_model,
           "--env", "SUMMARIZER_ONNX_THREADS=1", "--out", str(out)]
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "capacity-latest.json").read_text())
    assert data["mode"] == "quick" and data["model"] == tiny_model
    assert [s["users"] for s in data["steps"]] == data["config"]["users"] == [1, 2, 4]
    for step in data["steps"]:
        lat = step["latency"]
        assert step["ok"] > 0 and step["ok"] + step["errors"] == step["requests"], step
        assert lat["p50_s"] <= lat["p99_s"] <= lat["max_s"], step
        # closed loop, no think time: at most one request in flight per user (client time is not in flight)
        assert 0 < step["in_flight_littles_law"] <= step["users"] * 1.1, step
        assert step["in_flight_samples"] > 0 and 0 <= step["in_flight_metrics"] <= step["users"], step
    # the threshold is the alert's, not a copy
    rules = [r for g in yaml.safe_load((REPO_ROOT / "observability/alerts.yml").read_text())["groups"]
             for r in g["rules"]]
    p99_alert = next(r["expr"] for r in rules if r["alert"] == "SummarizerLatencyP99High")
    assert p99_alert.strip().endswith(f"> {data['p99_threshold_s']:g}")
    # the capacity is the fastest step within the threshold and without errors
    within = [s for s in data["steps"] if s["errors"] == 0 and s["latency"]["p99_s"] <= data["p99_threshold_s"]]
    assert data["capacity"]["throughput_rps"] == max(s["throughput_rps"] for s in within)
    minimum = data["autoscaler"]["min_replicas"]
    for row in data["replicas"]:
        planned = row["rate_rps"] / (data["capacity"]["throughput_rps"] * data["utilization"])
        assert row["replicas"] == max(minimum, math.ceil(planned - 1e-9)), row
    assert [r["rate_rps"] for r in data["replicas"]] == [10, 100, 1000]
    assert "capacity (p99 alert threshold" in proc.stdout and "1000 requests/s" in proc.stdout


def test_capacity_is_the_fastest_step_within_the_threshold_and_the_target_is_interpolated():
    from bench.capacity import plan_replicas

    steps = [_step(1, 10.0, 0.2), _step(8, 18.0, 1.0), _step(32, 20.0, 3.0), _step(64, 21.0, 4.5),
             _step(96, 22.0, 3.5, errors=40)]  # fastest, but refused requests: not a capacity
    plan = plan_replicas(steps, 4.0, {"min_replicas": 2, "max_replicas": 20, "target_in_flight": 16.0}, 0.8)
    assert plan["capacity"]["throughput_rps"] == 20.0 and plan["capacity"]["users"] == 32
    target = plan["autoscaler"]["at_target"]
    assert target["throughput_rps"] == pytest.approx(18.0 + (16 - 8) / (32 - 8) * 2.0)
    assert target["mean_latency_s"] == pytest.approx(16 / target["throughput_rps"])  # Little's law
    assert [r["replicas"] for r in plan["replicas"]] == [2, 7, 63]  # 10/16, 100/16, 1000/16 at 16 per replica
    assert [r["autoscaler_settles_at"] for r in plan["replicas"]] == [2, 6, 54]


def test_the_threshold_is_read_from_the_alert_rules_and_a_missing_one_is_reported(tmp_path):
    from bench.capacity import p99_alert_threshold_s

    rules = tmp_path / "alerts.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"alert": "SummarizerLatencyP99High", "expr": "histogram_quantile(0.99, x) > 2.5"}]}]}))
    assert p99_alert_threshold_s(rules) == 2.5
    with pytest.raises(ValueError, match="no alert 'Other'"):
        p99_alert_threshold_s(rules, "Other")
