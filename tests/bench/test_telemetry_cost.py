"""bench.telemetry_cost: the same service with OpenTelemetry export off and on, against a real collector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_telemetry_cost_measures_both_modes_through_a_real_collector(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "telemetry-cost.json"
    cmd = [sys.executable, "-m", "bench.telemetry_cost", "--model", tiny_model, "--requests", "4", "--concurrency",
           "2", "--rounds", "1", "--in-process-requests", "50", "--json", str(out)]
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true",
           "SUMMARIZER_ONNX_THREADS": "1", "SUMMARIZER_TORCH_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    data = json.loads(out.read_text())
    for mode in ("off", "on"):
        [row] = data["end_to_end"][mode]
        assert row["errors"] == 0 and row["throughput_rps"] > 0, (mode, row)
    assert data["throughput_ratio_on_off"]["n"] == 1 and data["throughput_ratio_on_off"]["median"] > 0
    micro = data["in_process"]
    assert micro["requests"] == 50 and micro["us_per_request_on"] > micro["us_per_request_off"] > 0
    assert "throughput: telemetry off" in proc.stdout
