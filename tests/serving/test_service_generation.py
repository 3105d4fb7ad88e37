"""Every per-request generation setting has a visible effect over HTTP, and an out-of-range one is a 400 naming it.

The plain tiny BART never ends a summary early (its random weights never favour the end token), so
min_new_tokens and length_penalty would change nothing on it. The model here is that BART with a small
bias towards the end token (its ``final_logits_bias``): ending is then always a close call, so where a
summary stops depends on each setting. The bias was chosen by scanning (0.32 to 0.34 all give the effects
asserted below, on PyTorch and on ONNX Runtime); it makes no claim about real models.
"""

from __future__ import annotations

import shutil

import httpx
import pytest

from harness import bentoml_serve
from model_store.store import import_model

END_TOKEN_BIAS = 0.33
DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"


@pytest.fixture(scope="module")
def terse_model(tiny_model_dir, bentoml_home, tmp_path_factory) -> str:
    """The tiny BART biased towards ending its summaries, imported like any model (with its ONNX export)."""
    from transformers import BartForConditionalGeneration

    model_dir = tmp_path_factory.mktemp("terse") / "tiny-bart-terse"
    shutil.copytree(tiny_model_dir, model_dir)
    model = BartForConditionalGeneration.from_pretrained(model_dir)
    model.final_logits_bias[0, model.config.eos_token_id] = END_TOKEN_BIAS
    model.save_pretrained(model_dir, safe_serialization=True)
    return import_model(str(model_dir), "tiny-bart-terse", labels={"purpose": "test"}).tag


@pytest.fixture(scope="module")
def server(terse_model, serve_env, tmp_path_factory):
    with bentoml_serve(tmp_path_factory.mktemp("generation") / "serve.log", serve_env(terse_model)) as served:
        yield served


def summarize(server, **generation) -> dict:
    response = httpx.post(f"{server.url}/summarize", json={"dialogue": DIALOGUE, "generation": generation},
                          timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_num_beams_changes_the_search(server):
    greedy, beams = summarize(server, num_beams=1), summarize(server, num_beams=4)
    assert greedy["summary"] != beams["summary"]
    assert greedy["backend"] == beams["backend"] == "onnx-cpu"


def test_min_new_tokens_keeps_the_summary_going(server):
    default = summarize(server)
    longer = summarize(server, min_new_tokens=20)
    assert default["output_tokens"] < 19
    # BART's forced first token is one of the new tokens but not a summary token (output_tokens counts
    # only those): min_new_tokens=20 guarantees at least 19 of them.
    assert longer["output_tokens"] >= 19


def test_length_penalty_favours_longer_summaries_as_it_grows(server):
    short = summarize(server, length_penalty=0.0)
    long = summarize(server, length_penalty=5.0)
    assert short["output_tokens"] < long["output_tokens"], (short, long)


def test_no_repeat_ngram_size_bans_repeats(server):
    # min_new_tokens makes the summaries long enough for repeats to show.
    free = summarize(server, no_repeat_ngram_size=0, min_new_tokens=20)["summary"].split()
    unique = summarize(server, no_repeat_ngram_size=1, min_new_tokens=20)["summary"].split()
    assert len(set(free)) <= len(free) / 2, f"without the rule this model repeats itself: {free}"
    assert len(unique) >= 10 and len(set(unique)) == len(unique), unique


def test_max_new_tokens_caps_the_summary(server):
    uncapped = summarize(server, length_penalty=5.0)["output_tokens"]
    capped = summarize(server, length_penalty=5.0, max_new_tokens=6)["output_tokens"]
    assert capped <= 6 < uncapped


def test_settings_apply_to_every_dialogue_of_a_batch(server):
    response = httpx.post(f"{server.url}/summarize_batch", timeout=60, json={
        "dialogues": [DIALOGUE, "Tom: Lunch at 12?\nAnna: OK"], "generation": {"min_new_tokens": 20}})
    assert response.status_code == 200, response.text
    assert all(s["output_tokens"] >= 19 for s in response.json()["summaries"])


OUT_OF_RANGE = [("num_beams", 0, "greater than or equal to 1"), ("num_beams", 9, "less than or equal to 8"),
                ("max_new_tokens", 0, "greater than or equal to 1"), ("max_new_tokens", 513, "less than or equal to 512"),
                ("min_new_tokens", -1, "greater than or equal to 0"), ("min_new_tokens", 513, "less than or equal to 512"),
                ("length_penalty", -0.5, "greater than or equal to 0"), ("length_penalty", 5.5, "less than or equal to 5"),
                ("no_repeat_ngram_size", -1, "greater than or equal to 0"),
                ("no_repeat_ngram_size", 11, "less than or equal to 10")]


@pytest.mark.parametrize("setting,value,allowed", OUT_OF_RANGE, ids=[f"{s}={v}" for s, v, _ in OUT_OF_RANGE])
@pytest.mark.parametrize("route", ["/summarize", "/summarize_batch"])
def test_an_out_of_range_setting_is_a_400_naming_it(server, route, setting, value, allowed):
    body = {"dialogue": DIALOGUE} if route == "/summarize" else {"dialogues": [DIALOGUE]}
    response = httpx.post(f"{server.url}{route}", json={**body, "generation": {setting: value}}, timeout=30)
    assert response.status_code == 400, response.text
    assert setting in response.text and allowed in response.text, response.text
