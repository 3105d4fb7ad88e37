"""The gate with real models and real scores: the shipped default model passes its committed baseline,
deliberately degraded copies of it fail and the report names the failing set and metric, and its int8
copy, which is not degraded, passes with its int8 graph really scored.

Runs on the first LIMIT dialogues of each set of the committed 'ci' baseline (corpus order), so that it
fits the test budget on two CPU cores (the int8 test runs the whole subset: see why there); `python -m eval
gate` runs the whole subset.
Skipped (with the reason) while model_store/default_model/ has not been trained yet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval import degrade
from model_store.beam_search import GRAPH_FILE
from model_store.onnx_graphs import fp32_weight_matmuls
from model_store.store import get_model
from serving.engines import ONNX_SUBDIR
from tests.eval.eval_cli import cli, read_report

LIMIT = "25"
SETS = ("dialogsum_test", "samsum_validation")


def gate(model: str, baseline, cache, report_dir, *extra: str, limit: str | None = LIMIT) -> tuple[int, str, dict]:
    code = cli("gate", "--model", model, "--baseline", str(baseline), "--subset", "ci",
               *(("--limit", limit) if limit else ()), "--cache-dir", str(cache), "--report-dir", str(report_dir),
               "--no-progress", *extra)
    markdown, report = read_report(report_dir)
    return code, markdown, report


def failed_checks(report: dict) -> set[tuple[str, str, str, str]]:
    return {(c["kind"], c["dataset"], c["backend"], c["metric"]) for c in report["gate"]["checks"] if not c["passed"]}


def test_shipped_model_passes_its_baseline(shipped_model, shipped_baseline, eval_cache, tmp_path):
    code, markdown, report = gate(shipped_model, shipped_baseline, eval_cache, tmp_path)
    assert code == 0, markdown
    assert report["verdict"] == "pass" and not failed_checks(report)
    for name in SETS:
        for backend in ("torch", "onnx"):
            # a trained model, not noise: well above what the tiny random BART gets (0)
            assert report["run"]["results"][name][backend]["scores"]["rougeL"]["mean"] > 10.0
    baseline = json.loads(shipped_baseline.read_text())["subsets"]["ci"]
    if baseline["model"]["weights_sha256"] == report["run"]["model"]["weights_sha256"]:
        # the very model of the baseline: the same code gives the same summaries
        assert all(abs(c["delta"]) < 0.5 for c in report["gate"]["checks"] if c["kind"] == "regression"), markdown


def test_generation_capped_at_four_tokens_fails(shipped_model, shipped_baseline, eval_cache, tmp_path):
    capped = degrade.capped_generation(shipped_model, tmp_path / "capped", max_new_tokens=4)
    code, markdown, report = gate(str(capped), shipped_baseline, eval_cache, tmp_path / "report")
    assert code == 1
    assert report["run"]["settings"]["max_new_tokens"] == 4
    assert {("regression", name, backend, "rougeL") for name in SETS for backend in ("torch", "onnx")} \
        <= failed_checks(report)
    assert "**FAIL**: dialogsum (dialogsum_test) / torch / ROUGE-L" in markdown
    assert "**FAIL**: samsum (samsum_validation) / onnx / ROUGE-L" in markdown
    assert "max_new_tokens" in " ".join(report["gate"]["notes"])  # the report says what changed
    worst = report["gate"]["worst"]["samsum_validation"]["onnx"][0]
    assert worst["baseline"] and worst["candidate"] and worst["references"] and worst["delta"] < 0


def test_noisy_weights_fail(shipped_model, shipped_baseline, eval_cache, tmp_path):
    noisy = degrade.noisy_weights(shipped_model, tmp_path / "noisy", std=1.0)
    code, markdown, report = gate(str(noisy), shipped_baseline, eval_cache, tmp_path / "report", "--backends", "torch")
    assert code == 1
    assert {("regression", name, "torch", "rougeL") for name in SETS} <= failed_checks(report)
    assert "**FAIL**: samsum (samsum_validation) / torch / ROUGE-L" in markdown
    assert "candidate weights differ from the baseline's" in " ".join(report["gate"]["notes"])


def test_int8_candidate_serves_its_int8_graph_and_passes(shipped_model, shipped_baseline, eval_cache, tmp_path):
    """The int8 model that `python -m model_store quantize` stores (degrade.int8_onnx runs the same code):
    the ONNX engine that the gate scores must run its int8 BeamSearch graph, and the gate must pass it.

    The verdict, measured on the whole 'ci' subset (100 + 100; onnxruntime 1.32.0, x86-64): ONNX ROUGE-L
    against the baseline -0.00 on DialogSum and +0.23 on SAMSum, and the same ONNX-minus-PyTorch
    differences (PyTorch keeps the fp32 weights: delta 0); 33 and 19 of the 100 summaries differ from fp32
    ONNX's. That is far inside the 2.0-point regression tolerance and inside the 0.5-point agreement one, so
    the gate passes: int8 changes summaries without lowering ROUGE-L beyond the noise of 100 dialogues (as
    on the full sets, README item 4), and a gate that blocked it would block a model that is as good.
    The whole subset, not the first 25: on 25 dialogues one changed summary moves a mean by more than the
    agreement tolerance, and the verdict would be the luck of the sample."""
    quantized = degrade.int8_onnx(shipped_model, tmp_path / "int8")
    graph = quantized / ONNX_SUBDIR / GRAPH_FILE
    fp32_graph = Path(get_model(shipped_model).path) / ONNX_SUBDIR / GRAPH_FILE
    assert len(fp32_weight_matmuls(fp32_graph)) > 20  # the check below can fail: fp32 has one per linear layer
    assert fp32_weight_matmuls(graph) == []  # every weight product int8, the decoder's shared weights included

    code, markdown, report = gate(str(quantized), shipped_baseline, eval_cache, tmp_path / "report", limit=None)
    # the engine that scored ONNX loaded the int8 BeamSearch graph and generated every summary with it
    onnx = report["run"]["generators"]["onnx"]
    assert onnx["beam_search_graph"] == str(graph)
    assert onnx["beam_search_summaries"] == sum(report["run"]["subset"]["sizes"].values()) == 200
    # and they are int8's summaries: fp32 ONNX gave PyTorch's on all 200 (the baseline), this one changes some
    baseline_rows = [json.loads(line) for line in
                     shipped_baseline.with_name("dialogue-bart-small.ci.jsonl").read_text().splitlines()]
    fp32 = {(r["set"], r["id"]): r["summaries"]["onnx"] for r in baseline_rows}
    changed = {name: [i for i, e in report["run"]["examples"][name]["onnx"].items() if e["summary"] != fp32[name, i]]
               for name in SETS}
    # (Not compared with a second run of the int8 engine: dynamic int8 scales the activations per batch, so
    # a summary depends on the dialogues batched with it; the counter above says which graph made them.)
    assert all(len(ids) >= 10 for ids in changed.values()), {k: len(v) for k, v in changed.items()}  # 33, 19
    assert code == 0 and report["verdict"] == "pass", markdown
    checks = report["gate"]["checks"]
    assert all(c["passed"] for c in checks)
    assert all(c["delta"] == pytest.approx(0.0, abs=0.5) for c in checks if c["backend"] == "torch")  # fp32
