"""observability/drift.py without a service: bins, PSI, the reference file, the worker's window, the report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from observability import drift
from observability.names import DIALOGUE_TOKEN_BUCKETS, INSTRUMENTS, LABELLED_LANGUAGES
from serving.inspection import InputStatistics

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "model_store" / "default_model" / drift.REFERENCE_FILE


def stats(tokens=100, over_context=False, speakers=2, language="en", fragmented=0.0) -> InputStatistics:
    return InputStatistics(tokens=tokens, over_context=over_context, speakers=speakers, language=language,
                           language_confidence=1.0, fragmented_words=fragmented)


def test_numeric_bins_are_prometheus_buckets_upper_bound_included():
    tokens = drift.STATISTICS["tokens"]
    assert tokens.labels == [str(b) for b in DIALOGUE_TOKEN_BUCKETS] + ["+Inf"]
    assert tokens.index(0) == 0 and tokens.index(64) == 0 and tokens.index(65) == 1
    assert tokens.index(4096) == len(DIALOGUE_TOKEN_BUCKETS) - 1 and tokens.index(4097) == len(DIALOGUE_TOKEN_BUCKETS)
    share = drift.STATISTICS["fragmented_words"]
    assert share.index(0.0) == 0 and share.index(0.005) == 1 and share.index(1.0) == len(share.labels) - 1
    # The histograms export the same bounds, so Prometheus' buckets are the reference's bins.
    buckets = {i.name: i.buckets for i in INSTRUMENTS}
    assert tuple(buckets["summarizer.input.tokens"]) == DIALOGUE_TOKEN_BUCKETS
    assert tuple(buckets["summarizer.input.speakers"]) == drift.STATISTICS["speakers"].bounds


def test_languages_are_a_bounded_label():
    language = drift.STATISTICS["language"]
    assert drift.language_label("de") == "de" and drift.language_label("sw") == "other"
    assert language.index("sw") == language.index("other") == len(language.labels) - 1
    assert set(language.labels) == {*LABELLED_LANGUAGES, "other"}


def test_psi_values():
    assert drift.psi([50, 50], [5, 5]) == 0.0
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert drift.psi([50, 50], [90, 10]) == pytest.approx(expected)
    assert drift.psi([1, 1], [9, 1]) == pytest.approx(drift.psi([9, 1], [1, 1]))  # symmetric
    # An empty bin is floored, not infinite: everything in a bin the reference never saw is a large PSI.
    assert 5 < drift.psi([100, 0], [0, 100]) < 20
    with pytest.raises(ValueError):
        drift.psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        drift.psi([0, 0], [1, 1])


def test_reference_round_trip_and_bins_that_changed(tmp_path):
    rows = [stats(tokens=t) for t in (10, 100, 300, 2000)] + [stats(language="de", over_context=True)]
    reference = drift.Reference(counts=drift.bin_counts(rows), dialogues=len(rows), source="test")
    path = tmp_path / drift.REFERENCE_FILE
    reference.save(path)
    assert drift.Reference.load(path) == reference
    assert reference.counts["tokens"][0] == 1 and sum(reference.counts["tokens"]) == 5
    assert reference.counts["language"][LABELLED_LANGUAGES.index("de")] == 1
    raw = json.loads(path.read_text())
    raw["statistics"]["tokens"]["bins"] = raw["statistics"]["tokens"]["bins"][1:]
    path.write_text(json.dumps(raw))
    with pytest.raises(drift.ReferenceError, match="tokens.*other bins.*observability.drift reference"):
        drift.Reference.load(path)
    assert drift.load_reference(path) is None  # the service goes on without PSI
    assert drift.load_reference(tmp_path / "absent.json") is None


def test_shipped_reference_is_the_training_corpus():
    reference = drift.Reference.load(SHIPPED)
    assert reference.dialogues == 14638 + 12399 and "samsum_train" in reference.source
    language = dict(zip(drift.STATISTICS["language"].labels, reference.counts["language"]))
    assert language["en"] / reference.dialogues > 0.97
    # Not one training dialogue identified as another language: English is never warned about.
    assert sum(v for k, v in language.items() if k not in ("en", "und")) == 0


def test_monitor_window_and_psi():
    reference = drift.Reference(counts=drift.bin_counts([stats(tokens=100)] * 90 + [stats(tokens=300)] * 10),
                                dialogues=100)
    monitor = drift.DriftMonitor(reference, window=20, min_dialogues=10)
    for _ in range(9):
        monitor.observe(stats(tokens=100))
    assert monitor.current_psi() == {} and monitor.gauge() == []  # too few to say anything
    for tokens in [100] * 9 + [300] * 2:  # 18 and 2 of 20: the reference's shares
        monitor.observe(stats(tokens=tokens))
    stable = monitor.current_psi()
    assert set(stable) == set(drift.STATISTICS) and stable["tokens"] < 0.2 and stable["language"] == 0.0
    for _ in range(20):  # the window is now only long German dialogues
        monitor.observe(stats(tokens=3000, over_context=True, language="de"))
    shifted = monitor.current_psi()
    assert shifted["tokens"] > 1 and shifted["language"] > 1 and shifted["over_context"] > 1
    assert shifted["speakers"] == 0.0
    assert {a["summarizer.statistic"]: v for v, a in monitor.gauge()} == shifted
    assert sum(monitor.window_counts()["tokens"]) == 20  # bounded


def test_report_from_dialogues_file(tmp_path, capsys):
    """The report command over a JSONL of dialogues with the shipped model's tokenizer and reference."""
    from eval.datasets import load_eval_set

    # SAMSum and DialogSum dialogues in the training set's proportions (a single corpus alone is a shift:
    # DialogSum's are longer than SAMSum's).
    samsum, dialogsum = load_eval_set("samsum_validation"), load_eval_set("dialogsum_test")
    english = [{"dialogue": e.dialogue} for i in range(90) for e in (samsum[i], dialogsum[i])][:170]
    path = tmp_path / "normal.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in english))
    assert drift.main(["report", "--dialogues", str(path), "--json"]) == 0
    normal = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert max(normal.values()) < 0.2, normal
    meetings = [{"dialogue": "\n".join(r["dialogue"] for r in english[i:i + 8])} for i in range(0, 152, 8)]
    path.write_text("\n".join(json.dumps(r) for r in english[:50] + meetings * 3))
    assert drift.main(["report", "--dialogues", str(path), "--last", "57"]) == 0
    printed = capsys.readouterr().out
    assert "tokens" in printed and "significant shift" in printed


def test_command_line_help():
    result = subprocess.run([sys.executable, "-m", "observability.drift", "report", "--help"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert "--prometheus" in result.stdout and "--dialogues" in result.stdout
