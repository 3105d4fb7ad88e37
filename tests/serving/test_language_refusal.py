"""SUMMARIZER_OTHER_LANGUAGES=refuse on a real ``bentoml serve`` (tiny model): a dialogue in another language
is refused with 422 and the one error shape, English and too-short-to-tell dialogues are summarized, and
/docs.json publishes the 422 on both summarize routes."""

from __future__ import annotations

import httpx
import pytest

from harness import bentoml_serve
from serving.errors import ErrorBody, ErrorCode
from tests.serving.test_inspection import FOREIGN

ENGLISH = "Amanda: I baked cookies. Do you want some?\nJerry: Sure, I would love some!\nAmanda: Tomorrow then."


@pytest.fixture(scope="module")
def server(tiny_model, serve_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("refusal") / "serve.log"
    with bentoml_serve(log, serve_env(tiny_model, SUMMARIZER_LANGUAGES="en,fr",
                                      SUMMARIZER_OTHER_LANGUAGES="refuse")) as served:
        yield served


def test_another_language_is_refused_with_the_error_shape(server):
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        refused = http.post("/summarize", json={"dialogue": FOREIGN["de"][1]})
        assert refused.status_code == 422
        body = ErrorBody.model_validate_json(refused.content)
        assert body.code == ErrorCode.UNSUPPORTED_LANGUAGE and body.field == "dialogue"
        assert body.allowed == ["en", "fr"] and "German (de" in body.message
        assert "Bestellung" not in refused.text  # the input is never echoed
        batch = http.post("/summarize_batch", json={"dialogues": [ENGLISH, FOREIGN["fr"][0], FOREIGN["ja"][0]]})
        assert batch.status_code == 422 and batch.json()["field"] == "dialogues[2]"
        ok = http.post("/summarize_batch", json={"dialogues": [ENGLISH, FOREIGN["fr"][0], "A: ok\nB: thx"]})
        assert ok.status_code == 200, ok.text
        assert [s["warnings"] for s in ok.json()["summaries"]] == [[], [], []]


def test_docs_publish_the_refusal(server):
    spec = httpx.get(f"{server.url}/docs.json", timeout=30.0).json()
    for route in ("/summarize", "/summarize_batch"):
        answer = spec["paths"][route]["post"]["responses"]["422"]
        assert "unsupported_language" in answer["description"]
        assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "422" not in spec["paths"]["/model"]["get"]["responses"]
