"""RecordAnswers in serving/flow.py's Flow, on a real SQLite store: every answered item recorded under the
request_id its Summary carries; a store that cannot be written never fails the request; answers past the
retention are pruned in the background; a record is written at once unless another writer holds the lock,
and the write-ahead log is checkpointed in the background."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import sqlite3
import time
from dataclasses import replace

from feedback.recording import RecordAnswers
from feedback.store import WAL_BACKSTOP_PAGES, SQLiteStore
from serving.flow import Call, Flow
from serving.protocol import GenerationSettings, Summary

SETTINGS = GenerationSettings(num_beams=2, max_new_tokens=32, min_new_tokens=0, length_penalty=1.0,
                              no_repeat_ngram_size=3)


async def generate(items, call):
    for item in items:
        item.summary = Summary(summary=f"summary of {item.dialogue}", model="m:1", backend="onnx-cpu",
                               input_tokens=len(item.dialogue), output_tokens=4, truncated=False)


def run(flow: Flow, dialogues: list[str]) -> list[Summary]:
    return asyncio.run(flow.run(dialogues, Call("m:1", SETTINGS, "/summarize_batch")))


def test_every_answer_is_recorded_under_its_request_id(tmp_path):
    store = SQLiteStore(tmp_path / "f.sqlite3")
    summaries = run(Flow(generate, [RecordAnswers(store, retain_text=True)]), ["A: hi", "B: bye"])
    for dialogue, summary in zip(["A: hi", "B: bye"], summaries):
        kept = store.answer(summary.request_id)
        assert (kept.dialogue, kept.summary, kept.route, kept.input_tokens) == (
            dialogue, summary.summary, "/summarize_batch", len(dialogue))
        assert kept.dialogue_sha256 == hashlib.sha256(dialogue.encode()).hexdigest()
        assert json.loads(kept.settings) == SETTINGS.model_dump()
    store.close()


def test_a_store_that_cannot_be_written_never_fails_the_request(tmp_path, caplog):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the store's directory should be")
    step = RecordAnswers(SQLiteStore(blocked / "f.sqlite3"))
    with caplog.at_level(logging.ERROR):
        summaries = run(Flow(generate, [step]), ["A: hi"])
    assert summaries[0].summary == "summary of A: hi" and summaries[0].request_id
    assert "RecordAnswers.after failed" in caplog.text


def test_answers_past_the_retention_are_pruned(tmp_path):
    store = SQLiteStore(tmp_path / "f.sqlite3")
    now = time.time()
    old_step = RecordAnswers(store, clock=lambda: now - 91 * 86_400)
    [old] = run(Flow(generate, [old_step]), ["A: long ago"])
    step = RecordAnswers(store, retention_days=90, clock=lambda: now)

    async def answer_then_prune():
        flow = Flow(generate, [step])
        summaries = await flow.run(["A: today"], Call("m:1", SETTINGS, "/summarize"))
        await step._pruning  # started in the background by that answer
        return summaries

    [new] = asyncio.run(answer_then_prune())
    assert store.answer(old.request_id) is None and store.answer(new.request_id) is not None
    store.close()


def record(store: SQLiteStore, n: int) -> list[str]:
    """n answers recorded through RecordAnswers, one request each; their request_ids."""
    step = RecordAnswers(store)
    return [s.request_id for _ in range(n) for s in run(Flow(generate, [step]), ["A: hi"])]


def test_an_answer_is_recorded_at_once_unless_another_writer_holds_the_lock(tmp_path):
    path = tmp_path / "f.sqlite3"
    store = SQLiteStore(path)
    [first] = record(store, 1)  # the first connects (in a thread: it may wait for another worker's schema)
    answer = store.answer(first)
    assert store.record_now([replace(answer, request_id="at-once")])
    assert store.answer("at-once") is not None
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another API worker writing
    started = time.perf_counter()
    assert not store.record_now([replace(answer, request_id="later")])
    assert time.perf_counter() - started < 0.5  # told at once, not after the busy timeout

    async def answered_while_locked():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
        [summary] = await Flow(generate, [RecordAnswers(store)]).run(["A: hi"], Call("m:1", SETTINGS, "/summarize"))
        ticker.cancel()
        return summary, ticks

    summary, ticks = asyncio.run(answered_while_locked())
    assert ticks >= 10  # the event loop went on while the record waited for the lock, in a thread
    assert store.answer(summary.request_id) is not None and store.answer("later") is None
    other.close()
    store.close()


def test_the_write_ahead_log_is_checkpointed_in_the_background_not_by_a_request(tmp_path):
    path = tmp_path / "f.sqlite3"
    store = SQLiteStore(path)
    ids = record(store, 20)
    assert store._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_BACKSTOP_PAGES
    step = RecordAnswers(store)

    async def answer_then_checkpoint():
        [summary] = await Flow(generate, [step]).run(["A: hi"], Call("m:1", SETTINGS, "/summarize"))
        await step._checkpointing  # started in the background by that answer
        return summary.request_id

    ids.append(asyncio.run(answer_then_checkpoint()))
    # The database file alone (without its -wal) now holds every answer: the checkpoint copied them back.
    alone = tmp_path / "copy.sqlite3"
    shutil.copyfile(path, alone)
    with sqlite3.connect(alone) as copy:
        kept = {row[0] for row in copy.execute("SELECT request_id FROM answers")}
    assert set(ids) <= kept
    store.close()
