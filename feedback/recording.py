"""The flow step that records every answer under its request_id, and the POST /feedback handling.

``RecordAnswers.after`` runs once every item of a request has its summary (cache hits included) and before
the answer leaves: a client that reads a request_id can rate it at once, from any API worker. A record is
written on the event loop when the store can do it without waiting (SQLite, its write lock free: a commit
without fsync, ~0.05 ms, where the hop to a thread and back cost ~0.1 ms and up to the GIL's 5 ms switch
interval when the CPUs are busy); otherwise (another writer holds the lock, PostgreSQL) in a thread, off the
event loop. What may take long runs in the background, never awaited by a request: the store's checkpoint
(SQLite's write-ahead log copied back into the database, with its fsyncs) about once a second while answers
are recorded, and the retention's prune about once an hour. The cost per request is measured by
``python -m bench.feedback_cost`` (README "Feedback"). A failed write is logged by the flow and never fails
the request (serving/flow.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Callable, Sequence

from feedback.protocol import FeedbackReceipt, FeedbackRequest
from feedback.store import AnswerRecord, FeedbackStore, StoreUnavailable, UnknownRequest, settings_json
from serving.errors import ErrorCode, error_response
from serving.flow import Call, Item, Step

logger = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
CHECKPOINT_EVERY_S = 1.0


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def answer_record(item: Item, call: Call, retain_text: bool, now: float) -> AnswerRecord:
    summary = item.summary
    return AnswerRecord(
        request_id=item.request_id, created_at=now, model=summary.model or call.model, route=call.route,
        settings=settings_json(call.settings), backend=str(summary.backend), dialogue_sha256=sha256_hex(item.dialogue),
        summary_sha256=sha256_hex(summary.summary), input_tokens=summary.input_tokens,
        output_tokens=summary.output_tokens, truncated=summary.truncated, cached=summary.cached,
        dialogue=item.dialogue if retain_text else None, summary=summary.summary if retain_text else None)


class RecordAnswers(Step):
    """Keeps each answered item in the feedback store; prunes past the retention about once an hour."""

    def __init__(self, store: FeedbackStore, retain_text: bool = False, retention_days: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.retain_text = retain_text
        self.retention_s = retention_days * 86_400.0
        self.clock = clock
        self._next_prune = 0.0
        self._pruning: asyncio.Task | None = None
        self._next_checkpoint = 0.0
        self._checkpointing: asyncio.Task | None = None

    async def after(self, items: Sequence[Item], call: Call) -> None:
        now = self.clock()
        records = [answer_record(item, call, self.retain_text, now) for item in items if item.summary is not None]
        if not self.store.record_now(records):
            await asyncio.to_thread(self.store.record, records)
        # Not awaited: a checkpoint's fsyncs or a large delete never hold up this answer (the tasks are kept
        # so that they are not collected).
        if now >= self._next_checkpoint and _idle(self._checkpointing):
            self._next_checkpoint = now + CHECKPOINT_EVERY_S
            self._checkpointing = asyncio.create_task(self._checkpoint())
        if self.retention_s and now >= self._next_prune and _idle(self._pruning):
            self._next_prune = now + PRUNE_EVERY_S
            self._pruning = asyncio.create_task(self._prune(now - self.retention_s))

    async def _checkpoint(self) -> None:
        try:
            await asyncio.to_thread(self.store.checkpoint)
        except Exception:  # noqa: BLE001 - tried again a second later; the log is bounded meanwhile
            logger.exception("feedback store: checkpoint failed")

    async def _prune(self, older_than: float) -> None:
        try:
            deleted = await asyncio.to_thread(self.store.prune, older_than)
            if deleted:
                logger.info("feedback store: %d answers past the retention deleted", deleted)
        except Exception:  # noqa: BLE001 - retried at the next prune; requests go on
            logger.exception("feedback store: pruning failed")


def _idle(task: asyncio.Task | None) -> bool:
    return task is None or task.done()


# The error statuses of POST /feedback besides those of every validated route (serving/openapi.py publishes them).
FEEDBACK_ERRORS = {
    404: "No answer is recorded under this request_id (code unknown_request, field request_id).",
    503: "The feedback store cannot be written (code unavailable, Retry-After: 5); nothing was stored.",
}


async def answer_feedback(store: FeedbackStore, request: FeedbackRequest, retention_days: int = 0):
    """POST /feedback: the receipt once the feedback is committed (in a thread, off the event loop); a 404
    ErrorBody for a request_id without a recorded answer; a 503 when the store cannot be written."""
    try:
        entry, replaced = await asyncio.to_thread(store.submit, request.request_id, request.rating.value,
                                                  request.corrected_summary, request.comment)
    except UnknownRequest:
        kept = f" in the last {retention_days} days (SUMMARIZER_FEEDBACK_RETENTION_DAYS)" if retention_days else ""
        return error_response(404, ErrorCode.UNKNOWN_REQUEST, "no answer is recorded under this request_id; send "
                              f"the request_id of a Summary this service gave{kept}", field="request_id")
    except StoreUnavailable:
        logger.exception("feedback store: a feedback could not be stored")
        return error_response(503, ErrorCode.UNAVAILABLE, "the feedback store cannot be written; nothing was "
                              "stored, send it again later", headers={"Retry-After": "5"})
    return FeedbackReceipt(feedback_id=entry.feedback_id, request_id=entry.request_id, stored=True, replaced=replaced)
