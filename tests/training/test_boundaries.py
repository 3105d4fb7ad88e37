"""training/boundaries.py: learns where conversations end from joined training dialogues (the real corpora in
../shared/data), writes weights that serving/conversation_boundaries.py loads and that find the boundaries."""

from __future__ import annotations

import json

from serving.conversation_boundaries import BoundaryModel
from training import boundaries


def test_a_small_training_run_writes_weights_that_find_conversation_ends(tmp_path):
    out = tmp_path / "boundaries.json"
    assert boundaries.main(["--out", str(out), "--joins", "150", "--steps", "150", "--min-count", "3",
                            "--prune", "0.01"]) == 0
    report = json.loads(out.read_text())
    assert report["training"]["boundaries"] > 0 and report["training"]["features_kept"] > 100
    # far above what scores without information give (the share of gaps that are boundaries, about 8 %)
    assert min(report["validation_average_precision"].values()) > 0.3
    model = BoundaryModel.load(out)
    closing_then_opening = ["A: Thank you so much. Bye!", "B: Good morning, can I help you?"]
    mid_conversation = ["A: How much is it?", "B: About eighty dollars."]
    assert model.log_odds(closing_then_opening)[1] > model.log_odds(mid_conversation)[1]


def test_the_shipped_weights_were_written_by_the_training_script():
    from serving.conversation_boundaries import WEIGHTS_PATH

    report = json.loads(WEIGHTS_PATH.read_text())
    assert report["trained_by"] == "python -m training.boundaries" and report["weights"]
    assert report["validation_average_precision"]["dialogsum"] > 0.6
