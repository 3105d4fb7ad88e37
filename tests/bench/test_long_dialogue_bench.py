"""The long-dialogue benchmark (python -m bench.long_dialogue): a small run on the tiny BART, checked for
structure and consistency (the scores are the benchmark's, in the README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_each_whole_is_the_ceiling_row_and_at_k1_it_is_truncation(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.long_dialogue", "--model", tiny_model, "--n", "3", "--ks", "1", "2",
           "--windows", "--resummarize", "--cost-chars", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "long_dialogue-latest.json").read_text())
    rows = {(row["k"], row["variant"]): row for row in report["rows"]}
    assert [variant for k, variant in rows if k == 2] == ["truncation", "windows 320 from 384",
                                                          "known ends (oracle)", "each whole (ceiling)"]
    known = rows[(2, "known ends (oracle)")]
    assert len(known["per_dialogue"]) == 3 and known["window_tokens"] == 320
    # one conversation summarized whole is what truncation does with it: the same summaries, the same score
    one, truncation = rows[(1, "each whole (ceiling)")], rows[(1, "truncation")]
    assert one["per_dialogue"] == truncation["per_dialogue"] and one["vs_truncation"] == 0.0
    assert one["long_share"] == 0.0 and one["windows_mean"] == 1 and one["generations"] == 3
    # two conversations: read as two windows, each one generation, as the service would count them
    two = rows[(2, "each whole (ceiling)")]
    assert two["windows_mean"] == 2 and two["dialogues"] == 3 and len(two["per_dialogue"]) == 3
    assert two["long_share"] == 1.0 and two["generations"] == 6 and two["rounds_mean"] == 1
    assert "each whole (ceiling)" in proc.stdout


def test_known_ends_cut_exactly_where_each_joined_dialogue_ends(tiny_model_dir):
    # the oracle row's boundary model, in the service's splitter with the real BART tokenizer: two DialogSum
    # dialogues that each fit a window are read as exactly those two, whatever their words
    from bench.long_dialogue import KnownEnds, long_dialogues
    from serving.long_dialogue import WindowSplitter, token_counter
    from serving.tokenization import ModelTokenizer

    count = token_counter(ModelTokenizer(tiny_model_dir))
    longs = long_dialogues(2, 6)
    known = KnownEnds(longs)
    for long in longs:
        turns = [line.strip() for line in long.text.splitlines() if line.strip()]
        first = len([line for line in long.parts[0].splitlines() if line.strip()])
        log_odds = known.log_odds(turns)
        assert log_odds[first] > 0 > max(log_odds[1:first] + log_odds[first + 1:])
        window = max(count(long.parts)) + 2
        splitter = WindowSplitter(count, window, known)
        windows = splitter._pack(splitter.units(long.text))
        assert sum(count(long.parts)) > window  # the two do not fit one window: cut between them, nowhere else
        assert [w.text for w in windows] == ["\n".join(line.strip() for line in part.splitlines() if line.strip())
                                             for part in long.parts]
