"""``python -m feedback export`` on a real SQLite store: the agreed JSONL pairs, in feedback order, with the
file's sha256 and count printed, and what could not become a pair counted with its reason."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from feedback.store import AnswerRecord, SQLiteStore

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = {"dialogue", "summary", "request_id", "rating", "model", "source"}


def answer(n: int, kept: bool, at: float = 1_790_000_000.0) -> AnswerRecord:
    dialogue, summary = f"A: question {n}?\nB: answer {n}.", f"B answers question {n}."
    return AnswerRecord(f"{n:032x}", at + n, "tiny-bart:v1", "/summarize", "{}", "onnx-cpu",
                        hashlib.sha256(dialogue.encode()).hexdigest(), hashlib.sha256(summary.encode()).hexdigest(),
                        12, 7, False, False, dialogue if kept else None, summary if kept else None)


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "feedback.sqlite3"
    store = SQLiteStore(path)
    store.record([answer(n, kept=n < 4) for n in range(7)])
    store.submit(f"{0:032x}", "good", None, "fine")  # accepted
    store.submit(f"{1:032x}", "bad", "B gives answer 1 — corrigé.", None)  # corrected (non-ASCII kept as is)
    store.submit(f"{2:032x}", "bad", None, "wrong")  # bad without a correction: no pair
    store.submit(f"{3:032x}", "good", "B answers 3 briefly.", None)  # corrected, rated good
    store.submit(f"{4:032x}", "bad", "B answers 4.", None)  # no text kept: skipped
    store.submit(f"{5:032x}", "good", None, None)  # no text kept: skipped
    # answer 6: no feedback at all
    store.close()
    return path


def run_export(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "feedback", "export", "--path", str(db), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_export_writes_the_agreed_pairs_and_says_what_it_skipped(db, tmp_path):
    out = tmp_path / "pairs.jsonl"
    done = run_export(db, "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = out.read_bytes().decode("utf-8").splitlines()
    pairs = [json.loads(line) for line in lines]
    assert all(KEYS <= set(p) for p in pairs)
    assert [(p["request_id"][-1], p["source"], p["rating"], p["summary"]) for p in pairs] == [
        ("0", "accepted", "good", "B answers question 0."),
        ("1", "corrected", "bad", "B gives answer 1 — corrigé."),
        ("3", "corrected", "good", "B answers 3 briefly.")]
    assert [p["dialogue"] for p in pairs] == [f"A: question {n}?\nB: answer {n}." for n in (0, 1, 3)]
    assert {p["model"] for p in pairs} == {"tiny-bart:v1"}
    printed = done.stdout
    assert f"exported 3 pairs to {out} (1 accepted, 2 corrected)" in printed
    assert f"sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}" in printed
    assert "skipped 2: their dialogue" in printed and "retention was off" in printed
    assert "skipped 1: rated bad without a corrected summary" in printed


def test_the_same_store_exports_the_same_bytes(db, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert run_export(db, "--out", str(first)).returncode == 0
    assert run_export(db, "--out", str(second)).returncode == 0
    assert first.read_bytes() == second.read_bytes() and first.read_bytes()


def test_filters_and_stdout(db):
    done = run_export(db, "--source", "corrected", "--rating", "good")
    assert done.returncode == 0, done.stderr
    pairs = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(p["request_id"][-1], p["source"]) for p in pairs] == [("3", "corrected")]
    assert "exported 1 pairs" in done.stderr and "sha256 " in done.stderr


def test_since_selects_by_when_the_feedback_was_given(db):
    done = run_export(db, "--since", "2999-01-01")
    assert done.returncode == 0 and done.stdout == "" and "exported 0 pairs" in done.stderr


def test_a_missing_store_is_an_error_not_an_empty_export(tmp_path):
    done = run_export(tmp_path / "nothing-here.sqlite3", "--out", str(tmp_path / "x.jsonl"))
    assert done.returncode == 1 and "no feedback store at" in done.stderr
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "nothing-here.sqlite3").exists()
