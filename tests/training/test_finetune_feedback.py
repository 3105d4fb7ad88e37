"""The loop closed, end to end on the tiny BART in the test session's BentoML home: a feedback export ->
``python -m training.finetune_feedback`` -> a new model in the store whose labels, metadata and model card name
the export -> the ROUGE-L gate -> no Bento when it fails, a Bento carrying the provenance when it passes.

One fine-tune and one import serve every test (the import's ONNX export is the slow part). The tiny model's
summaries are noise: against its own baseline any tiny candidate passes; against one whose SAMSum summaries
are the human references (tests/eval/tiny_baselines.py), it fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import pytest

from eval.datasets import load_eval_set
from tests.eval import tiny_baselines
from training import finetune_feedback
from training.finetune_feedback import read_export

PAIRS = 6
TINY_NAME = "tiny-bart"


def _bentos() -> set[str]:
    import bentoml

    try:
        return {str(b.tag) for b in bentoml.bentos.list()}
    except FileNotFoundError:  # a new BentoML home has no bentos/ until the first build
        return set()


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = finetune_feedback.main(list(args))
    return code, out.getvalue(), err.getvalue()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, str]:
    """A real feedback store (SQLite, as the service keeps it with SUMMARIZER_FEEDBACK_RETAIN_TEXT=true) exported
    by `python -m feedback export`: 3 summaries accepted, 3 corrected, one dialogue answered and accepted twice
    (an exact duplicate pair), one answer kept without its text (the exporter skips it). (path, what it printed)"""
    from feedback.__main__ import main as feedback_main
    from feedback.store import AnswerRecord, SQLiteStore

    work = tmp_path_factory.mktemp("feedback")
    examples = load_eval_set("dialogsum_validation")[:PAIRS]
    said = [f"the model's summary {i}" for i in range(PAIRS)]
    texts = [(ex.dialogue, said[i]) for i, ex in enumerate(examples)] + [(examples[0].dialogue, said[0])]
    store = SQLiteStore(work / "feedback.sqlite3")
    store.record([AnswerRecord(f"{i:032x}", 1_790_000_000.0 + i, "tiny-bart:v1", "/summarize", "{}", "onnx-cpu",
                               _sha(d), _sha(m), 100, 10, False, False, d, m) for i, (d, m) in enumerate(texts)]
                 + [AnswerRecord(f"{99:032x}", 1_790_000_099.0, "tiny-bart:v1", "/summarize", "{}", "onnx-cpu",
                                 _sha("x"), _sha("y"), 1, 1, False, False)])
    for i, ex in enumerate(examples):
        store.submit(f"{i:032x}", "bad" if i % 2 else "good", ex.summary if i % 2 else None, None)
    store.submit(f"{PAIRS:032x}", "good", None, None)
    store.submit(f"{99:032x}", "bad", "a correction of a dialogue that was not kept", None)
    store.close()
    out, path = io.StringIO(), work / "feedback.jsonl"
    with contextlib.redirect_stdout(out):
        assert feedback_main(["export", "--path", str(work / "feedback.sqlite3"), "--out", str(path)]) == 0
    return path, out.getvalue()


@pytest.fixture(scope="module")
def export(exported) -> Path:
    return exported[0]


@pytest.fixture(scope="module")
def baselines(tiny_model, tmp_path_factory) -> dict[str, Path]:
    cache = tmp_path_factory.mktemp("eval_cache")
    own = tiny_baselines.tiny_baseline(tiny_model, cache, tmp_path_factory.mktemp("baselines"))
    return {"cache": cache, "own": own,
            "stronger": tiny_baselines.stronger_baseline(own, tmp_path_factory.mktemp("stronger"))}


def _gate_args(baseline: Path, cache: Path, report: Path) -> list[str]:
    return ["--baseline", str(baseline), "--limit", tiny_baselines.LIMIT, "--cache-dir", str(cache),
            "--report-dir", str(report), "--no-progress"]


@pytest.fixture(scope="module")
def refused(tiny_model, export, baselines, tmp_path_factory) -> dict:
    """`make finetune FEEDBACK=... BENTO=1` of the tiny model, gated against a baseline it cannot meet."""
    work = tmp_path_factory.mktemp("finetune")
    before = _bentos()
    code, out, err = _cli("--feedback", str(export), "--model", tiny_model, "--out", str(work / "run"),
                          "--epochs", "2", "--mix", "0.5", "--threads", "1", "--bento",
                          *_gate_args(baselines["stronger"], baselines["cache"], work / "report"))
    stored = [line for line in out.splitlines() if line.startswith("stored ")]
    assert stored, out + err
    return {"code": code, "out": out, "err": err, "tag": stored[0].split()[1], "before": before,
            "after": _bentos(), "work": work}


def test_the_export_is_read_as_the_exporter_wrote_it(exported):
    """The fine-tune names the export by the sha256 and count that `python -m feedback export` printed."""
    export, printed = exported
    read = read_export(export)
    assert f"exported {PAIRS + 1} pairs to {export} (4 accepted, 3 corrected)" in printed
    assert f"sha256 {read.sha256}" in printed and "skipped 1: their dialogue" in printed
    assert len(read.examples) == PAIRS and read.duplicates == 1
    assert read.sources == {"accepted": 3, "corrected": 3} and read.models == {"tiny-bart:v1": PAIRS}
    assert read.given and read.given[0] <= read.given[1]


@pytest.mark.parametrize("lines, says", [
    (['{"dialogue": "A: hi", "summary": "A greets."}', "{not json"], ":2: not JSON"),
    (['{"dialogue": "", "summary": "A greets.", "source": "corrected"}'], ":1: 'dialogue' must be a non-empty string"),
    (['{"dialogue": "A: hi", "summary": "A greets.", "source": "guessed"}'], ":1: 'source' must be one of"),
    ([""], "no feedback pairs in it: nothing to learn from"),
])
def test_a_bad_export_is_refused_before_training(lines, says, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = _cli("--feedback", str(path), "--out", str(tmp_path / "run"))
    assert code == 2 and err.startswith(f"error: {path}") and says in err, err
    assert not (tmp_path / "run").exists() and out == ""


def test_the_fine_tune_is_a_new_model_that_names_its_feedback(refused, tiny_model, export):
    import bentoml

    tag = refused["tag"]
    assert tag.startswith(f"{TINY_NAME}-feedback:")
    model = bentoml.models.get(tag)
    sha = hashlib.sha256(export.read_bytes()).hexdigest()
    assert model.info.labels["feedback_export_sha256"] == sha and model.info.labels["feedback_pairs"] == str(PAIRS)
    assert model.info.labels["finetuned_from"] == tiny_model and model.info.labels["onnx"] == "yes"
    meta = model.info.metadata
    assert meta["feedback"]["export_sha256"] == sha and meta["feedback"]["pairs"] == PAIRS
    assert meta["feedback"]["corrected"] == 3 and meta["feedback"]["duplicates_dropped"] == 1
    assert meta["feedback"]["feedback_given_until"] >= meta["feedback"]["feedback_given_from"]
    assert meta["finetuned_from"] == tiny_model and meta["finetuned_at"] and meta["gate_baseline"] == TINY_NAME
    training = meta["training"]
    assert training["settings"]["epochs"] == 2 and training["settings"]["lr"] == 1e-4
    assert training["rehearsal_pairs"] == PAIRS // 2 and training["epochs_done"] == 2 and training["steps"] >= 2
    # a real import: Hugging Face files and the ONNX BeamSearch graph, each file's sha256 recorded
    root = Path(model.path)
    assert (root / "onnx" / "beam_search.onnx").exists() and meta["onnx"]["beam_search"]
    assert set(meta["sha256"]) >= {"hf/model.safetensors", "onnx/beam_search.weights", "hf/README.md"}
    source = bentoml.models.get(tiny_model)
    assert meta["sha256"]["hf/model.safetensors"] != source.info.metadata["sha256"]["hf/model.safetensors"]
    # the served name's latest is untouched until someone ships the fine-tune
    assert str(bentoml.models.get(f"{TINY_NAME}:latest").tag) == tiny_model
    card = (root / "hf" / "README.md").read_text()
    assert f"base_model: {tiny_model}" in card and sha in card and f"{PAIRS} pairs (3 corrected, 3 accepted" in card
    assert "lr 0.0001" in card and "eval/baselines/tiny-bart.json" in card
    examples = load_eval_set("dialogsum_validation")[:PAIRS]
    assert not any(ex.dialogue[:40] in card or ex.summary in card for ex in examples)  # no feedback text in it
    # the gate resolves the lineage's baseline (eval/baselines/tiny-bart.json) for the new name
    from eval.generate import resolve_candidate

    assert resolve_candidate(tag).gate_baseline == TINY_NAME


def test_a_failing_gate_builds_no_bento_and_says_why(refused):
    assert refused["code"] == 1, refused["out"] + refused["err"]
    assert refused["after"] == refused["before"]
    assert "ROUGE-L gate FAILED (samsum_validation/torch/rougeL; samsum_validation/onnx/rougeL): no Bento built" \
        in refused["err"]
    assert f"ROUGE-L gate FAILED for {refused['tag']}: no Bento built" in refused["out"]
    report = json.loads((refused["work"] / "report" / "report.json").read_text())
    assert report["verdict"] == "fail" and report["run"]["model"]["tag"] == refused["tag"]


def test_a_passing_gate_builds_the_bento_with_the_provenance(refused, baselines, export, tiny_model, tmp_path,
                                                             capsys):
    """What `make bento MODEL=<tag>` (or --bento) does once the gate passes: the Bento packs the fine-tune and
    its labels carry the feedback export's hash and count next to the scores."""
    import bentoml

    args = finetune_feedback.build_parser().parse_args(
        ["--feedback", str(export), "--bento", *_gate_args(baselines["own"], baselines["cache"], tmp_path)])
    before = _bentos()
    outcome = finetune_feedback.decide(args, refused["tag"])
    out, err = capsys.readouterr()
    assert outcome.exit_code == 0 and outcome.gate == "passed", err
    assert f"ROUGE-L gate passed: {refused['tag']} may ship" in out
    [built] = _bentos() - before
    bento = bentoml.bentos.get(built)
    assert [str(m.tag) for m in bento.info.all_models] == [refused["tag"]]
    labels = bento.info.labels
    assert labels["eval_gate"] == "passed" and labels["eval_baseline"] == "tiny-bart.json"
    assert labels["feedback_export_sha256"] == hashlib.sha256(export.read_bytes()).hexdigest()
    assert labels["feedback_pairs"] == str(PAIRS) and labels["finetuned_from"] == tiny_model


def test_without_bento_the_next_command_is_printed(refused, baselines, export, tmp_path, capsys):
    args = finetune_feedback.build_parser().parse_args(
        ["--feedback", str(export), *_gate_args(baselines["own"], baselines["cache"], tmp_path)])
    before = _bentos()
    assert finetune_feedback.decide(args, refused["tag"]).exit_code == 0
    assert f"next: make bento MODEL={refused['tag']}" in capsys.readouterr().out
    assert _bentos() == before


def test_resume_refuses_a_directory_of_another_fine_tune(tiny_model, export, tmp_path):
    """--resume continues the run in --out; one of another export (or other settings) is not mixed in."""
    (tmp_path / "finetune.json").write_text(json.dumps({"source": tiny_model, "export_sha256": "0" * 64,
                                                        "settings": {}}))
    code, out, err = _cli("--feedback", str(export), "--model", tiny_model, "--out", str(tmp_path), "--resume")
    assert code == 2 and f"{tmp_path} holds a fine-tune of {tiny_model} on export 000000000000" in err, err
    assert not (tmp_path / "checkpoint.pt").exists()
