"""The benchmark harness (python -m bench) runs end to end on the tiny BART and writes the JSON its report
is made from. No timing is asserted: these are smoke runs on a busy CI machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# The harness's own target keys, by item: what the README's performance table is filled from.
ITEM_KEYS = {
    "onnx_vs_torch": {"latency_s", "ratio_to_torch", "onnx_latency_ratio", "int8_latency_ratio", "breakdown",
                      "int8_quality", "same_summaries_as_torch"},
    "serving_overhead": {"direct_p50_s", "service_p50_s", "ratio", "added_ms", "same_summaries"},
    "adaptive_batching": {"batching_on", "batching_off", "throughput_ratio", "batch_sizes", "engine_groups"},
    "vs_fastapi_pipeline": {"service", "fastapi_pipeline", "throughput_ratio", "p99_ratio",
                            "baseline_sequential_throughput_rps", "throughput_ratio_to_sequential_baseline"},
    "cold_start": {"cold_start_s", "memory_idle_after_one_request", "baseline_cold_start_s"},
    "gpu": set(),
}


def bench_env(bentoml_home, tmp_path) -> dict[str, str]:
    return {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true",
            "SUMMARIZER_EVAL_CACHE": str(tmp_path / "eval-cache")}


def test_harness_quickest_run_writes_every_item(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "--quick", "--model", tiny_model, "--threads", "1", "--repeats", "1",
           "--overhead-requests", "2", "--engine-dialogues", "1", "--quality-limit", "2", "--concurrency", "4",
           "--load-requests", "4", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=bench_env(bentoml_home, tmp_path), capture_output=True, text=True,
                          timeout=300)
    data = json.loads((out / "bench-latest.json").read_text())
    assert set(data["items"]) == set(ITEM_KEYS)
    assert data["model"]["tag"] == tiny_model
    assert {"machine", "settings", "targets", "threads", "preset"} <= set(data)
    for item, keys in ITEM_KEYS.items():
        entry = data["items"][item]
        assert "error" not in entry, (item, entry.get("error"), proc.stderr[-3000:])
        assert keys <= set(entry), (item, sorted(entry))
    assert data["items"]["gpu"].get("skipped") or data["items"]["gpu"].get("best_summaries_per_s")
    for key in ("median", "min", "max", "n", "met", "target"):
        assert key in data["items"]["serving_overhead"]["ratio"]
    assert data["items"]["serving_overhead"]["same_summaries"] == 1.0  # the service serves what generate() makes
    batching = data["items"]["adaptive_batching"]
    for system in ("batching_on", "batching_off"):  # every request through the client was answered
        assert batching[system]["failed_requests"] == 0 and batching[system]["requests"] == 4, batching[system]
    # BentoML's batch-size histogram, read from the service's /metrics, saw the 4 requests of the round
    formed = batching["batch_sizes"]["batching_on"]
    assert formed and sum(s["batches"] * s["mean_batch_size"] for s in formed.values()) >= 4, formed
    baseline = data["items"]["vs_fastapi_pipeline"]["fastapi_pipeline"]
    assert baseline["failed_requests"] == 0 and baseline["throughput_rps"]["median"] > 0
    memory = data["items"]["cold_start"]["memory_idle_after_one_request"]
    assert memory["processes"] >= 2 and memory["rss_mib"] > 0  # the server and its workers
    assert "1 serving overhead" in proc.stdout and "results:" in proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_unknown_item_is_refused_with_the_known_ones():
    proc = subprocess.run([sys.executable, "-m", "bench", "--items", "nope"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown items ['nope']" in proc.stderr and "serving_overhead" in proc.stderr
