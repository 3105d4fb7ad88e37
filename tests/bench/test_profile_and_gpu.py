"""bench.profile (ONNX Runtime's time by layer part) and bench.gpu (bart-large-cnn's shape) on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_decoder_profile_splits_onnx_runtime_time_by_layer_part(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.profile", "--model", tiny_model, "--batch-sizes", "1,4", "--dialogues", "4",
           "--threads", "1", "--out", str(out)]
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
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
