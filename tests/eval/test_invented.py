"""Invented words (eval/invented.py) against Debian's real wamerican word list and SAMSum validation."""

from __future__ import annotations

import json

import pytest

from eval.invented import WORD_LIST, count, load_word_list, main

pytestmark = pytest.mark.skipif(not WORD_LIST.exists(), reason="needs Debian's wamerican (.ci/run installs it)")


def test_a_mangled_name_is_invented_a_dialogue_word_or_an_english_word_is_not():
    dialogue = "Maxton: I'll bring the Zalalonce cake.\nAmanda: Great!"
    summary = "#Person1# and Maxtonton: Amanda's cake is Zalalonce, she'll bring it. Maxton agrees"
    result = count([(summary, dialogue)], load_word_list())
    assert dict(result.invented) == {"Maxtonton": 1}  # placeholders skipped; possessive and clitic forms known
    assert result.words == 11 and result.summaries_with_invented == 1
    assert result.as_dict()["share_percent"] == pytest.approx(100 / 11, abs=1e-3)


def test_the_command_counts_a_summaries_file_of_samsum_validation(tmp_path, capsys):
    from eval.datasets import load_eval_set

    first, second = load_eval_set("samsum_validation")[:2]
    path = tmp_path / "run.full.jsonl"
    rows = [{"set": "samsum_validation", "id": first.id, "summaries": {"onnx": "Qwzxt went home."}},
            {"set": "samsum_validation", "id": second.id, "summaries": {"onnx": "They talk."}},
            {"set": "dialogsum_test", "id": "test_0", "summaries": {"onnx": "Qwzxt."}}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["--summaries", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["summaries"], out["words"], out["invented"]) == (2, 5, 1)
    assert out["most_common"] == [["Qwzxt", 1]]
    assert main(["--summaries", str(path), "--backend", "torch"]) == 2  # nothing to count is an error
