"""The scorer against ROUGE values computed by hand on short strings, and the subset selection.

rouge-score lowercases, keeps ``[a-z0-9]+`` tokens and Porter-stems tokens longer than three characters.
F1 = 2PR / (P + R), reported x100.
"""

from __future__ import annotations

import numpy as np
import pytest

from eval.datasets import SUBSETS, SUITE_SETS, Example, load_subset, select_subset
from eval.rouge import bootstrap_ci, score_one, split_sentences


def test_one_reference_by_hand():
    # pred: the cat sat on the mat / ref: the cat is on the mat (6 tokens each)
    # unigrams in common: the x2, cat, on, mat = 5 -> P = R = 5/6
    # bigrams: pred {the cat, cat sat, sat on, on the, the mat}, ref {the cat, cat is, is on, on the, the mat}
    #          3 in common of 5 each -> 3/5
    # LCS: the cat on the mat = 5 -> 5/6
    s = score_one("the cat sat on the mat", ["the cat is on the mat"])
    assert s["rouge1"] == pytest.approx(500 / 6, abs=1e-6)
    assert s["rouge2"] == pytest.approx(60.0, abs=1e-6)
    assert s["rougeL"] == pytest.approx(500 / 6, abs=1e-6)
    assert s["rougeLsum"] == pytest.approx(500 / 6, abs=1e-6)


def test_stemming_by_hand():
    # pred: dogs barked -> [dog, bark]; ref: the dog barks -> [the, dog, bark] ("dog" has 3 letters: not stemmed)
    # ROUGE-1: 2 common, P = 2/2, R = 2/3 -> F = 2 * 1 * 2/3 / (5/3) = 0.8
    # ROUGE-2: pred {dog bark}, ref {the dog, dog bark}: P = 1, R = 1/2 -> F = 2/3
    s = score_one("Dogs barked!", ["The dog barks."])
    assert s["rouge1"] == pytest.approx(80.0, abs=1e-6)
    assert s["rouge2"] == pytest.approx(200 / 3, abs=1e-6)
    assert s["rougeL"] == pytest.approx(80.0, abs=1e-6)


def test_best_reference_taken_per_metric_by_hand():
    # pred: red big cat ran
    # ref A "red big old sun": R1 2/4 -> 50; R2 {red big} 1 of 3 -> 33.33; LCS "red big" 2/4 -> 50
    # ref B "ran cat big red": R1 4/4 -> 100; R2 0; LCS one token 1/4 -> 25
    # best per metric: R1 100 (B), R2 33.33 (A), RL 50 (A)
    s = score_one("red big cat ran", ["red big old sun", "ran cat big red"])
    assert s["rouge1"] == pytest.approx(100.0, abs=1e-6)
    assert s["rouge2"] == pytest.approx(100 / 3, abs=1e-6)
    assert s["rougeL"] == pytest.approx(50.0, abs=1e-6)


def test_rouge_l_and_lsum_differ_on_reordered_sentences_by_hand():
    # ROUGE-L, one sequence: pred [the dog ran the cat sat], ref [the cat sat the dog ran]; LCS 3 -> 3/6 = 50
    # ROUGE-Lsum, one sentence a line: each reference sentence is matched whole by one predicted sentence,
    # union LCS 3 + 3 = 6 of 6 -> 100. This is why the two conventions publish different numbers.
    s = score_one("The dog ran. The cat sat.", ["The cat sat. The dog ran."])
    assert s["rougeL"] == pytest.approx(50.0, abs=1e-6)
    assert s["rougeLsum"] == pytest.approx(100.0, abs=1e-6)


def test_speaker_tags_tokenize_like_words():
    s = score_one("#Person1# asks #Person2# for help.", ["Person1 asks Person2 for help"])
    assert all(v == pytest.approx(100.0) for v in s.values())


def test_empty_prediction_scores_zero():
    assert all(v == 0.0 for v in score_one("", ["Amanda baked cookies."]).values())


def test_split_sentences():
    assert split_sentences("Amanda baked cookies. Jerry wants some! OK?") == \
        "Amanda baked cookies.\nJerry wants some!\nOK?"
    assert split_sentences('He said "go." Then left.\nNew line') == 'He said "go."\nThen left.\nNew line'
    assert split_sentences("No end mark") == "No end mark"


def test_bootstrap_interval():
    assert bootstrap_ci([42.0] * 30) == (42.0, 42.0)
    values = np.random.default_rng(1).normal(30.0, 10.0, size=400)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high
    # about 1.96 standard errors each side
    assert (high - low) / 2 == pytest.approx(1.96 * values.std() / np.sqrt(values.size), rel=0.2)
    assert bootstrap_ci(values) == bootstrap_ci(values)  # seeded


def test_subset_is_fixed_seeded_and_in_corpus_order():
    examples = [Example(id=f"x{i}", dialogue=f"d{i}", references=("r",)) for i in range(50)]
    a = select_subset(examples, 10, seed=1, name="s")
    assert {e.id for e in select_subset(list(reversed(examples)), 10, seed=1, name="s")} == {e.id for e in a}
    assert [e.id for e in a] == sorted((e.id for e in a), key=lambda i: int(i[1:]))
    assert len(a) == 10 and a != select_subset(examples, 10, seed=2, name="s")
    assert select_subset(examples, None) == examples


def test_ci_and_full_subsets_of_the_real_corpora():
    ci, full = load_subset("ci"), load_subset("full")
    assert set(ci) == set(full) == set(SUITE_SETS)
    assert {k: len(v) for k, v in full.items()} == {"dialogsum_test": 500, "samsum_validation": 818}
    assert all(len(v) == SUBSETS["ci"] for v in ci.values())
    assert all(len(ex.references) == 3 for ex in full["dialogsum_test"])
    for name in ci:
        assert {e.id for e in ci[name]} <= {e.id for e in full[name]}
    assert [e.id for e in load_subset("ci")["samsum_validation"]] == [e.id for e in ci["samsum_validation"]]
