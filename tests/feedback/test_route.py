"""POST /feedback through a real ``bentoml serve`` of the tiny BART, with text retention off (the default):
an answer's request_id is rated and stored; unknown ids get 404 and bad values 400, in the error shape; the
store keeps only hashes of the dialogue and the summary."""

from __future__ import annotations

import hashlib
import sqlite3

import httpx
import pytest

from client import ErrorCode, FeedbackReceipt, ServiceError, SummarizerClient
from feedback.protocol import MAX_COMMENT_CHARS, MAX_CORRECTED_SUMMARY_CHARS
from feedback.store import SQLiteStore
from harness import bentoml_serve

DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"
OTHER = "Tom: Lunch at 12?\nAnna: OK"
ERROR_KEYS = {"code", "message", "field", "allowed"}


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    return tmp_path_factory.mktemp("feedback_route") / "feedback.sqlite3"


@pytest.fixture(scope="module")
def server(tiny_model, serve_env, db_path):
    with bentoml_serve(db_path.parent / "serve.log", serve_env(tiny_model, SUMMARIZER_FEEDBACK_PATH=str(db_path))) \
            as served:
        yield served


@pytest.fixture
def summarizer(server):
    with SummarizerClient(server.url) as client:
        yield client


@pytest.fixture
def store(db_path):
    opened = SQLiteStore(db_path)
    yield opened
    opened.close()


def test_a_rated_answer_is_stored_under_its_request_id(summarizer, store, tiny_model):
    summary = summarizer.summarize(DIALOGUE)
    assert len(summary.request_id) == 32
    receipt = summarizer.feedback(summary.request_id, "bad", corrected_summary="Amanda will bring Jerry cookies.",
                                  comment="misses who brings them")
    assert isinstance(receipt, FeedbackReceipt)
    assert receipt.request_id == summary.request_id and receipt.stored and not receipt.replaced
    kept = store.feedback(summary.request_id)
    assert kept is not None and kept.feedback_id == receipt.feedback_id
    assert (kept.rating, kept.corrected_summary, kept.comment) == (
        "bad", "Amanda will bring Jerry cookies.", "misses who brings them")
    answer = store.answer(summary.request_id)
    assert answer.model == tiny_model and answer.route == "/summarize" and answer.backend == "onnx-cpu"
    assert (answer.input_tokens, answer.output_tokens, answer.cached) == (summary.input_tokens,
                                                                          summary.output_tokens, False)
    assert '"num_beams"' in answer.settings


def test_a_second_feedback_replaces_the_first(summarizer, store):
    request_id = summarizer.summarize(OTHER).request_id
    first = summarizer.feedback(request_id, "bad")
    second = summarizer.feedback(request_id, "good", comment="on second thought, fine")
    assert second.replaced and second.feedback_id != first.feedback_id
    kept = store.feedback(request_id)
    assert (kept.feedback_id, kept.rating, kept.comment) == (second.feedback_id, "good", "on second thought, fine")


def test_every_summary_of_a_batch_can_be_rated(summarizer, store):
    batch = summarizer.summarize_batch([DIALOGUE, OTHER])
    ids = [s.request_id for s in batch.summaries]
    assert len(set(ids)) == 2
    for request_id in ids:
        summarizer.feedback(request_id, "good")
    assert [store.answer(i).route for i in ids] == ["/summarize_batch"] * 2
    assert [store.feedback(i).rating for i in ids] == ["good", "good"]


def test_retention_off_keeps_only_hashes(summarizer, db_path):
    summary = summarizer.summarize(DIALOGUE)
    with sqlite3.connect(db_path) as db:
        row = db.execute("SELECT dialogue_sha256, summary_sha256, dialogue, summary FROM answers "
                         "WHERE request_id = ?", (summary.request_id,)).fetchone()
        everything = " ".join(str(v) for r in db.execute("SELECT * FROM answers") for v in r)
    assert row == (hashlib.sha256(DIALOGUE.encode()).hexdigest(),
                   hashlib.sha256(summary.summary.encode()).hexdigest(), None, None)
    assert "Amanda" not in everything and summary.summary not in everything


def test_an_unknown_request_id_is_404(server):
    answer = httpx.post(f"{server.url}/feedback", json={"request_id": "0" * 32, "rating": "good"})
    assert answer.status_code == 404
    body = answer.json()
    assert set(body) == ERROR_KEYS and body["code"] == ErrorCode.UNKNOWN_REQUEST and body["field"] == "request_id"


def test_the_client_raises_a_service_error_for_an_unknown_request_id(summarizer):
    with pytest.raises(ServiceError) as caught:
        summarizer.feedback("f" * 32, "good")
    assert caught.value.status == 404 and caught.value.code == ErrorCode.UNKNOWN_REQUEST


@pytest.mark.parametrize(("body", "field", "code"), [
    ({"request_id": "not-an-id", "rating": "good"}, "request_id", ErrorCode.INVALID_REQUEST),
    ({"request_id": "a" * 32, "rating": "excellent"}, "rating", ErrorCode.INVALID_REQUEST),
    ({"request_id": "a" * 32, "rating": 5}, "rating", ErrorCode.INVALID_REQUEST),
    ({"request_id": "a" * 32}, "rating", ErrorCode.INVALID_REQUEST),
    ({"request_id": "a" * 32, "rating": "bad", "corrected_summary": "  \n"}, "corrected_summary",
     ErrorCode.INVALID_REQUEST),
    ({"request_id": "a" * 32, "rating": "bad", "corrected_summary": "x" * (MAX_CORRECTED_SUMMARY_CHARS + 1)},
     "corrected_summary", ErrorCode.INVALID_REQUEST),
    ({"request_id": "a" * 32, "rating": "bad", "comment": "x" * (MAX_COMMENT_CHARS + 1)}, "comment",
     ErrorCode.INVALID_REQUEST),
    ({"request_id": "a" * 32, "rating": "bad", "stars": 3}, "stars", ErrorCode.UNKNOWN_FIELD),
], ids=["bad id", "unknown rating", "number rating", "no rating", "blank correction", "long correction",
        "long comment", "unknown field"])
def test_bad_values_are_400_with_the_error_shape(server, body, field, code):
    answer = httpx.post(f"{server.url}/feedback", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert set(error) == ERROR_KEYS and error["code"] == code and error["field"] == field
    assert "x" * 50 not in error["message"], "an error message never echoes the input"


def test_feedback_is_published_in_the_openapi_document(server):
    spec = httpx.get(f"{server.url}/docs.json").json()
    operation = spec["paths"]["/feedback"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/FeedbackRequest")
    assert {"200", "400", "404", "503"} <= set(operation["responses"])
    schema = spec["components"]["schemas"]["FeedbackRequest"]
    assert schema["properties"]["corrected_summary"]["maxLength"] == MAX_CORRECTED_SUMMARY_CHARS
    assert schema["additionalProperties"] is False and set(schema["required"]) == {"request_id", "rating"}
