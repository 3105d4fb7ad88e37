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
                                                          "each whole (ceiling)"]
    # one conversation summarized whole is what truncation does with it: the same summaries, the same score
    one, truncation = rows[(1, "each whole (ceiling)")], rows[(1, "truncation")]
    assert one["per_dialogue"] == truncation["per_dialogue"] and one["vs_truncation"] == 0.0
    assert one["long_share"] == 0.0 and one["windows_mean"] == 1 and one["generations"] == 3
    # two conversations: read as two windows, each one generation, as the service would count them
    two = rows[(2, "each whole (ceiling)")]
    assert two["windows_mean"] == 2 and two["dialogues"] == 3 and len(two["per_dialogue"]) == 3
    assert two["long_share"] == 1.0 and two["generations"] == 6 and two["rounds_mean"] == 1
    assert "each whole (ceiling)" in proc.stdout
