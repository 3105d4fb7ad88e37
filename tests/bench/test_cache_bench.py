"""The response cache benchmark (python -m bench.cache): a small run against a real service on the tiny BART,
checked for structure and consistency (not timings: those are the benchmark's, in the README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_small_run_measures_hits_beside_misses(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.cache", "--quick", "--hits", "20", "--misses", "3", "--stores", "memory",
           "--model", tiny_model, "--out", str(out)]
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true",
           "SUMMARIZER_ONNX_THREADS": "1", "SUMMARIZER_API_WORKERS": "1"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "cache-latest.json").read_text())
    memory = report["stores"]["memory"]
    assert memory["hit"]["n"] == 20 and memory["miss"]["n"] == 3 and memory["livez"]["n"] == 20
    assert memory["unexpected"] == {"miss_while_hits": 0, "hit_while_misses": 0, "errors": 0}
    assert memory["hit_service_ms"]["p50_s"] < memory["hit"]["p50_s"]  # the service's part of the client's time
    assert report["target_hit_p99_s"] == 0.005 and report["model"] == tiny_model
    assert "memory  hit" in proc.stdout and "memory  miss" in proc.stdout and "target" in proc.stdout


def test_unknown_stores_are_refused():
    proc = subprocess.run([sys.executable, "-m", "bench.cache", "--stores", "memcached"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "--stores takes memory and/or redis" in proc.stderr
