"""The feedback store on a real PostgreSQL (tests/feedback/conftest.py starts it): the same behaviour as SQLite
(each store test runs on both), and the service with SUMMARIZER_FEEDBACK_URL: answers recorded there, rated
through POST /feedback; with the database down, summaries are still answered, a feedback gets 503, and once it
is back the service writes to it again."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest

from client import ErrorCode, ServiceError, SummarizerClient
from feedback.store import AnswerRecord, PostgresStore, SQLiteStore, UnknownRequest
from harness import bentoml_serve

DIALOGUE = "Customer: My card was charged twice.\nAgent: I see it; the second charge is refunded today."


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "feedback.sqlite3")
    else:
        url = request.getfixturevalue("postgres").url
        with psycopg.connect(url, autocommit=True) as conn:  # each test starts from empty tables
            conn.execute("DROP TABLE IF EXISTS feedback, answers")
        opened = PostgresStore(url)
    yield opened
    opened.close()


def answer(n: int, at: float, text: bool = True) -> AnswerRecord:
    return AnswerRecord(f"{n:032x}", at, "m:1", "/summarize", '{"num_beams": 4}', "onnx-cpu", "d" * 64, "s" * 64,
                        100 + n, 20, n % 2 == 0, n % 3 == 0, f"dialogue {n}" if text else None,
                        f"summary {n}" if text else None)


def test_answers_are_kept_once(store):
    first = answer(1, 1000.0)
    store.record([first, answer(2, 1001.0, text=False)])
    store.record([answer(1, 9999.0)])  # the same request_id again: left as it was
    assert store.answer(first.request_id) == first
    assert store.answer(f"{2:032x}").dialogue is None
    assert store.answer("f" * 32) is None


def test_text_with_nul_characters_is_kept(store):
    with_nul = AnswerRecord(**{**answer(1, 1000.0).__dict__, "dialogue": "A: \x00hi", "summary": "s\x00"})
    store.record([with_nul])
    store.submit(with_nul.request_id, "bad", "fixed\x00", "note\x00")
    kept = store.answer(with_nul.request_id)
    assert kept.dialogue in ("A: \x00hi", "A: \ufffdhi")  # PostgreSQL's text cannot hold NUL
    assert store.feedback(with_nul.request_id).corrected_summary in ("fixed\x00", "fixed\ufffd")


def test_feedback_is_stored_replaced_and_refused_for_unknown_ids(store):
    store.record([answer(1, 1000.0)])
    first, replaced = store.submit(f"{1:032x}", "bad", "a better summary", "note")
    assert not replaced and store.feedback(f"{1:032x}") == first
    second, replaced = store.submit(f"{1:032x}", "good", None, None)
    assert replaced and store.feedback(f"{1:032x}") == second
    with pytest.raises(UnknownRequest):
        store.submit("e" * 32, "good", None, None)
    assert store.feedback("e" * 32) is None


def test_rated_answers_in_feedback_order_and_pruning(store):
    now = time.time()
    store.record([answer(n, now - (10 - n) * 86_400) for n in range(4)])
    for n in (2, 0, 3):
        store.submit(f"{n:032x}", "good", None, None)
    assert [r.answer.request_id[-1] for r in store.rated()] == ["2", "0", "3"]
    assert store.prune(now - 8 * 86_400) == 2  # answers 0 and 1 (10 and 9 days old), with 0's feedback
    assert store.answer(f"{0:032x}") is None and store.feedback(f"{0:032x}") is None
    assert [r.answer.request_id[-1] for r in store.rated()] == ["2", "3"]


def test_the_service_records_in_postgresql_and_survives_it_going_away(postgres, tiny_model, serve_env, tmp_path):
    env = serve_env(tiny_model, SUMMARIZER_FEEDBACK_URL=postgres.url)
    with bentoml_serve(tmp_path / "serve.log", env) as server, SummarizerClient(server.url) as client:
        summary = client.summarize(DIALOGUE)
        receipt = client.feedback(summary.request_id, "bad", corrected_summary="The double charge is refunded.")
        with psycopg.connect(postgres.url) as conn:
            row = conn.execute("SELECT a.model, a.dialogue, a.output_tokens, f.feedback_id, f.corrected_summary "
                               "FROM answers a JOIN feedback f USING (request_id) WHERE request_id = %s",
                               (summary.request_id,)).fetchone()
        assert row == (tiny_model, None, summary.output_tokens, receipt.feedback_id, "The double charge is refunded.")
        unknown = httpx.post(f"{server.url}/feedback", json={"request_id": "0" * 32, "rating": "good"})
        assert unknown.status_code == 404 and unknown.json()["code"] == ErrorCode.UNKNOWN_REQUEST

        postgres.server.stop()
        during = client.summarize(DIALOGUE)  # the record write fails, the answer does not
        assert during.summary == summary.summary
        with pytest.raises(ServiceError) as refused:
            client.feedback(summary.request_id, "good")
        assert refused.value.status == 503 and refused.value.code == ErrorCode.UNAVAILABLE
        assert "feedback store" in server.log() and "failed; the request goes on without it" in server.log()

        postgres.restart()
        after = client.summarize(DIALOGUE)
        assert client.feedback(after.request_id, "good").stored
        assert client.feedback(summary.request_id, "good").replaced  # the answer from before the outage
