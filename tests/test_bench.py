"""The benchmark harness, the load test and the GPU script run end to end on the tiny BART and write the
JSON their reports are made from. No timing is asserted: these are smoke runs on a busy CI machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

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


def _env(bentoml_home, tmp_path) -> dict[str, str]:
    return {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true",
            "SUMMARIZER_EVAL_CACHE": str(tmp_path / "eval-cache")}


def test_harness_quickest_run_writes_every_item(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "--quick", "--model", tiny_model, "--threads", "1", "--repeats", "1",
           "--overhead-requests", "2", "--engine-dialogues", "1", "--quality-limit", "2", "--concurrency", "4",
           "--load-requests", "4", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(bentoml_home, tmp_path), capture_output=True, text=True,
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
    assert "1 serving overhead" in proc.stdout and "results:" in proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_decoder_profile_splits_onnx_runtime_time_by_layer_part(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.profile", "--model", tiny_model, "--batch-sizes", "1,4", "--dialogues", "4",
           "--threads", "1",
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(bentoml_home, tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "profile-latest.json").read_text())
    one, four = data["batches"]
    assert (one["batch_size"], one["calls"], four["batch_size"], four["calls"]) == (1, 4, 4, 1)
    assert sum(four["groups_first_call"]) == 4 and one["dialogues"] == four["dialogues"] == 4
    for row in (one, four):
        shares = row["encoder_share"] + row["decoder_share"] + row["generate_loop_share"]
        assert 0.97 <= shares <= 1.03, row  # the three parts account for the wall time
        parts = row["decoder_parts_share"]
        assert {"cross_attention", "self_attention", "feed_forward", "output_projection"} <= set(parts), parts
        assert abs(sum(parts.values()) - 1.0) < 0.01
    # four dialogues' beams read four times one dialogue's cross-attention keys and values (or more: padding)
    assert four["cross_attention_bytes_per_step"] >= 3.9 * one["cross_attention_bytes_per_step"] > 0
    assert "cross K/V per step" in proc.stdout


def test_profile_assigns_onnx_nodes_to_layer_parts():
    from bench.profile import part_of

    assert part_of("/model/decoder/layers.0/encoder_attn/MatMul/MatMulScaleFusion//MatmulT") == "cross_attention"
    assert part_of("/model/decoder/layers.2/self_attn/k_proj/MatMul") == "self_attention"
    assert part_of("/model/decoder/layers.1/fc1/MatMul") == "feed_forward"
    assert part_of("/lm_head/MatMul") == "output_projection"
    assert part_of("/model/decoder/layers.1/final_layer_norm/LayerNormalization") == "other"
    assert part_of("/model/decoder/layers.0/encoder_attn_layer_norm/LayerNormalization") == "other"


def test_gpu_script_smoke_mode_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "-m", "bench.gpu", "--tiny", "--repeats", "1", "--json", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [r["batch_size"] for r in data["rows"]] == [1, 2]
    assert all(r["all_forced_to_length"] for r in data["rows"])  # every sequence generated the forced length
    assert data["best_summaries_per_s"] > 0


def test_gpu_script_builds_bart_large_cnn_architecture():
    import torch

    from bench.gpu import BART_LARGE_CNN, build_model

    with torch.device("meta"):
        model = build_model(BART_LARGE_CNN, torch.float16, "meta")
    assert 405e6 < sum(p.numel() for p in model.parameters()) < 407e6
    assert model.config.d_model == 1024 and model.config.encoder_layers == 12 == model.config.decoder_layers


def test_loadtest_smoke_run_reports_phases_batches_and_cost(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.loadtest", "--model", tiny_model, "--start-users", "2", "--peak-users", "4",
           "--ramp-s", "4", "--hold-s", "4", "--overload-users", "12", "--overload-s", "4",
           "--env", "SUMMARIZER_MAX_PENDING=4", "--env", "SUMMARIZER_ONNX_THREADS=1", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(bentoml_home, tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "loadtest-latest.json").read_text())
    assert set(data["phases"]) == {"ramp", "hold", "overload"}
    assert data["phases"]["hold"]["ok"] > 0
    assert data["admission_limit"] == 4
    overload = data["phases"]["overload"]
    assert overload["outcomes"].get("503_admission", 0) > 0  # 12 users against a limit of 4
    assert overload["rejections"]["with_retry_after"] == 1.0
    assert data["batch_sizes"]["summarizer_onnx"]["batches"] > 0
    assert {r["instance"] for r in data["cost"]["rows"]} and data["cost"]["rows"][0]["usd_per_1k_requests"] > 0
    assert "past capacity:" in proc.stdout


def test_loadtest_analysis_on_synthetic_records():
    from bench.loadtest import analyse, cost_table

    config = {"ramp_s": 10.0, "hold_s": 10.0, "overload_s": 10.0, "overload_users": 8}
    records = []
    for i in range(20):
        records.append({"t": i * 0.5, "phase": "ramp" if i < 20 else "hold", "users": 2, "kind": "short",
                        "status": 200, "latency_s": 0.5, "input_tokens": 100, "output_tokens": 20})
    for i in range(40):
        records.append({"t": 10 + i * 0.25, "phase": "hold", "users": 4, "kind": "long", "status": 200,
                        "latency_s": 1.0, "input_tokens": 300, "output_tokens": 30})
    for i in range(10):
        records.append({"t": 20 + i, "phase": "overload", "users": 8, "kind": "short", "status": 503,
                        "latency_s": 0.01, "reason": "admission", "retry_after": "1", "body": "service overloaded"})
    report = analyse(records, config)
    assert report["capacity_rps"] == pytest.approx(4.0)  # 40 answers in the 10 s hold
    assert report["phases"]["hold"]["tokens_per_s"] == pytest.approx(40 * 330 / 10)
    assert report["overload_verdict"]["pass"] is True
    records.append({"t": 25, "phase": "overload", "users": 8, "kind": "short", "status": 500, "latency_s": 0.1,
                    "error": "boom"})
    assert analyse(records, config)["overload_verdict"]["pass"] is False
    cost = cost_table(report, {"test instance": 3.6})
    assert cost["rows"][0]["usd_per_1k_requests"] == pytest.approx(3.6 / 3600 / 4.0 * 1000)
    assert cost["managed"]["usd_per_1k_requests"] == 1.35
