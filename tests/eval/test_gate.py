"""The suite and the gate end to end on the tiny BART: baseline, cache, reports, service URL, Bento labels.

The tiny model's summaries are noise (ROUGE near 0), so a failing gate is provoked here with a baseline
whose summaries are the human references; real degraded models are in test_gate_default.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.datasets import REPO_ROOT
from harness import bentoml_serve
from tests.eval import tiny_baselines
from tests.eval.eval_cli import cli, read_report


@pytest.fixture(scope="module")
def tiny_baseline(tiny_model, eval_cache, tmp_path_factory) -> Path:
    return tiny_baselines.tiny_baseline(tiny_model, eval_cache, tmp_path_factory.mktemp("baselines"))


@pytest.fixture(scope="module")
def stronger_baseline(tiny_baseline, tmp_path_factory) -> Path:
    """The tiny baseline with SAMSum's summaries replaced by the human references: the tiny model is far worse."""
    return tiny_baselines.stronger_baseline(tiny_baseline, tmp_path_factory.mktemp("stronger"))


def test_baseline_records_scores_and_configuration(tiny_model, tiny_baseline):
    data = json.loads(tiny_baseline.read_text())
    entry = data["subsets"]["ci"]
    assert data["model"] == "tiny-bart"
    assert entry["model"]["tag"] == tiny_model and len(entry["model"]["weights_sha256"]) == 64
    assert set(entry["model"]["fingerprints"]) == {"torch", "onnx"}
    assert entry["settings"] == {"num_beams": 4, "max_new_tokens": 24, "min_new_tokens": 2, "length_penalty": 1.0,
                                 "no_repeat_ngram_size": 3}
    assert entry["subset"]["sizes"] == {"dialogsum_test": 3, "samsum_validation": 3}
    assert entry["subset"]["seed"] and entry["subset"]["ids_sha256"]["dialogsum_test"]
    assert {"torch", "transformers", "onnxruntime", "rouge-score"} <= set(entry["versions"])
    assert entry["command"].startswith("python -m eval baseline")
    block = entry["results"]["dialogsum_test"]["onnx"]
    assert block["n"] == 3 and set(block["scores"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert block["scores"]["rougeL"]["ci_low"] <= block["scores"]["rougeL"]["mean"] <= block["scores"]["rougeL"]["ci_high"]
    assert entry["agreement"]["samsum_validation"]["n"] == 3
    rows = [json.loads(line) for line in tiny_baseline.with_name("tiny-bart.ci.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(set(r["summaries"]) == {"torch", "onnx"} and r["dialogue_sha"] for r in rows)


def test_same_model_passes_and_a_rerun_comes_from_the_cache(tiny_model, tiny_baseline, eval_cache, tmp_path):
    code = cli("gate", "--model", tiny_model, "--baseline", str(tiny_baseline), "--cache-dir", str(eval_cache),
               "--report-dir", str(tmp_path), "--no-progress")
    assert code == 0
    markdown, report = read_report(tmp_path)
    assert markdown.startswith("# ROUGE-L gate PASSED")
    assert report["verdict"] == "pass"
    checks = report["gate"]["checks"]
    assert sorted((c["kind"], c["dataset"], c["backend"]) for c in checks) == [
        ("agreement", "dialogsum_test", "onnx vs torch"), ("agreement", "samsum_validation", "onnx vs torch"),
        ("regression", "dialogsum_test", "onnx"), ("regression", "dialogsum_test", "torch"),
        ("regression", "samsum_validation", "onnx"), ("regression", "samsum_validation", "torch")]
    assert all(c["delta"] == 0 for c in checks if c["kind"] == "regression")
    timing = report["run"]["timing"]
    assert all(timing[s][b]["generated"] == 0 and timing[s][b]["cached"] == 3
               for s in ("dialogsum_test", "samsum_validation") for b in ("torch", "onnx"))
    assert "candidate weights are the baseline's" in " ".join(report["gate"]["notes"])


def test_regression_fails_and_the_report_names_set_backend_and_metric(tiny_model, stronger_baseline, eval_cache,
                                                                      tmp_path, capsys):
    code = cli("gate", "--model", tiny_model, "--baseline", str(stronger_baseline), "--cache-dir", str(eval_cache),
               "--report-dir", str(tmp_path), "--no-progress")
    assert code == 1
    out = capsys.readouterr()
    assert "ROUGE-L gate FAILED (samsum_validation/torch/rougeL; samsum_validation/onnx/rougeL)" in out.err
    assert "**FAIL**: samsum (samsum_validation) / torch / ROUGE-L" in out.out
    markdown, report = read_report(tmp_path)
    assert markdown.startswith("# ROUGE-L gate FAILED")
    failed = [c for c in report["gate"]["checks"] if not c["passed"]]
    assert {(c["dataset"], c["backend"], c["metric"]) for c in failed} == {
        ("samsum_validation", "torch", "rougeL"), ("samsum_validation", "onnx", "rougeL")}
    assert all(c["delta"] < -c["tolerance"] for c in failed)
    # side by side: reference, baseline summary (here the reference itself), candidate summary
    worst = report["gate"]["worst"]["samsum_validation"]["onnx"]
    assert len(worst) == 3 and worst[0]["baseline"] == worst[0]["references"][0] and worst[0]["candidate"]
    assert "### samsum / onnx" in markdown and "| id | delta | reference | baseline summary | candidate summary |" in markdown
    assert report["gate"]["worst"]["dialogsum_test"]["onnx"] == []


def test_run_compares_with_the_baseline_without_a_verdict(tiny_model, stronger_baseline, eval_cache, tmp_path,
                                                          capsys):
    """`python -m eval run` is not the gate: against a baseline the candidate falls far short of, it exits 0
    and its report shows the gate's checks as a comparison, with no pass or fail heading."""
    code = cli("run", "--model", tiny_model, "--baseline", str(stronger_baseline), "--cache-dir", str(eval_cache),
               "--report-dir", str(tmp_path), "--no-progress")
    assert code == 0
    out = capsys.readouterr().out
    title = out.splitlines()[0]
    assert title.startswith("# ROUGE evaluation: ") and "a report, not the gate" in title, title
    assert "gate PASSED" not in out and "gate FAILED" not in out and "**FAIL**" not in out
    assert "**outside tolerance**: samsum (samsum_validation) / torch / ROUGE-L" in out
    markdown, report = read_report(tmp_path)
    assert markdown.splitlines()[0] == title
    assert report["verdict"] is None and "gate" not in report and "passed" not in report["comparison"]
    outside = {(c["dataset"], c["backend"]) for c in report["comparison"]["checks"] if not c["passed"]}
    assert outside == {("samsum_validation", "torch"), ("samsum_validation", "onnx")}


def test_missing_baseline_is_a_usage_error(tiny_model, tiny_baseline, tmp_path, capsys):
    assert cli("gate", "--model", tiny_model, "--baseline", str(tmp_path / "none.json")) == 2
    assert "python -m eval baseline" in capsys.readouterr().err
    assert cli("gate", "--model", tiny_model, "--baseline", str(tiny_baseline), "--subset", "full") == 2
    assert "no 'full' baseline" in capsys.readouterr().err


def test_hugging_face_directory_is_exported_to_onnx_once(tiny_model_dir, eval_cache):
    from eval.generate import ensure_onnx, resolve_candidate

    candidate = ensure_onnx(resolve_candidate(str(tiny_model_dir)), eval_cache, log=lambda _: None)
    assert candidate.name == "tiny-bart" and (candidate.onnx_dir / "beam_search.weights").exists()
    stamp = (candidate.onnx_dir / "beam_search.onnx").stat().st_mtime_ns
    again = ensure_onnx(resolve_candidate(str(tiny_model_dir)), eval_cache, log=pytest.fail)
    assert again.onnx_dir == candidate.onnx_dir
    assert (again.onnx_dir / "beam_search.onnx").stat().st_mtime_ns == stamp


def test_running_service_end_to_end(tiny_model, tiny_baseline, serve_env, eval_cache, tmp_path):
    """What the service returns is what the ONNX engine scored (CPU: the service routes to ONNX). The service's
    windows for long dialogues are off: the baseline's engine reads every dialogue in one call (the windows'
    own quality is measured by bench/long_dialogue.py)."""
    with bentoml_serve(tmp_path / "serve.log", serve_env(tiny_model, SUMMARIZER_LONG_DIALOGUES="false")) as server:
        code = cli("gate", "--url", server.url, "--baseline", str(tiny_baseline), "--report-dir", str(tmp_path / "r"),
                   "--no-progress")
    assert code == 0
    _, report = read_report(tmp_path / "r")
    assert report["run"]["model"]["tag"] == tiny_model
    assert report["run"]["generators"]["service"]["primary"] == "onnx"
    baseline = [json.loads(x) for x in tiny_baseline.with_name("tiny-bart.ci.jsonl").read_text().splitlines()]
    for name in ("dialogsum_test", "samsum_validation"):
        assert report["run"]["results"][name]["service"]["served_by"] == ["onnx-cpu"]
        served = {i: e["summary"] for i, e in report["run"]["examples"][name]["service"].items()}
        assert served == {r["id"]: r["summaries"]["onnx"] for r in baseline if r["set"] == name}


@pytest.mark.skipif(not (REPO_ROOT / "bentofile.yaml").exists(), reason="bentofile.yaml not written yet")
def test_bento_is_built_only_after_the_gate_and_carries_its_scores(tiny_model, tiny_baseline, stronger_baseline,
                                                                   eval_cache, tmp_path, capsys):
    import bentoml

    def bentos() -> set[str]:
        return {str(b.tag) for b in bentoml.bentos.list()}

    before = bentos()
    assert cli("bento", "--model", tiny_model, "--baseline", str(stronger_baseline), "--cache-dir", str(eval_cache),
               "--report-dir", str(tmp_path / "blocked"), "--no-progress") == 1
    assert "no Bento built" in capsys.readouterr().err
    assert bentos() == before

    assert cli("bento", "--model", tiny_model, "--baseline", str(tiny_baseline), "--cache-dir", str(eval_cache),
               "--report-dir", str(tmp_path / "built"), "--no-progress") == 0
    [tag] = bentos() - before
    bento = bentoml.bentos.get(tag)
    labels = bento.info.labels
    _, report = read_report(tmp_path / "built")
    expected = report["run"]["results"]["dialogsum_test"]["onnx"]["scores"]["rougeL"]
    assert labels["rougeL_dialogsum_onnx"] == f"{expected['mean']:.2f}"
    assert labels["rougeL_dialogsum_onnx_ci95"] == f"{expected['ci_low']:.2f}-{expected['ci_high']:.2f}"
    assert {"rougeL_samsum_torch", "rougeL_samsum_onnx_delta", "eval_subset", "eval_tolerance"} <= set(labels)
    assert labels["eval_gate"] == "passed" and labels["task"] == "summarization"  # bentofile labels kept
    assert [str(m.tag) for m in bento.info.all_models] == [tiny_model]
