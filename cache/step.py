"""The response cache as a step of the public service's flow (serving/flow.py).

    before   each dialogue not answered yet is looked up; a hit becomes its summary, ``cached: true``, and
             gets back the ``Item.derived`` its dialogue had when it was generated
    after    each new summary (generated in this request, never a hit again) is stored, with its item's
             ``Item.derived``

The first step of the flow: a hit costs no step before it. A hit keeps what was generated (summary, tokens,
truncation, backend, the generation's own notices such as how a long dialogue was summarized) and what the
steps derived from the dialogue (e.g. its input statistics: carried as they are, never read here); the
request's own facts are the current request's: its request_id, its duration and the warnings the steps
before generation give (e.g. the language of this input). A request whose generation failed never reaches
``after``: only answers are stored.

A cache that fails never fails or holds a request: each call to the store has ``timeout_s``; after a
failure (an error or a timeout) the cache is left alone for ``backoff_s`` (its lookups count as errors and
the dialogues are generated), then tried again by the next request. The first failure is logged once, with
its error; the recovery is logged once too; what happens in between is counted, not logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from cache.keys import cache_key
from cache.stores import Store
from serving.flow import Call, Item, Step
from serving.protocol import Notice, Summary

logger = logging.getLogger(__name__)

KEY_FACT = "cache.key"  # Item.facts: this dialogue's key, from before to after
DERIVED = "derived"  # an entry's field holding its item's Item.derived (entries written before it lack it)
# What an entry leaves out: the request's own facts (set again for every request that is answered).
PER_REQUEST = {"request_id", "cached", "duration_ms", "warnings"}
HIT, MISS, ERROR = "hit", "miss", "error"
STORED, TOO_LARGE = "stored", "too_large"


class Backoff:
    """After a failure, no call for ``backoff_s`` (a circuit breaker's open state); one call is let through
    after it, and its outcome closes or re-opens the breaker. Logs the change to failing and back, once."""

    def __init__(self, what: str, backoff_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.backoff_s, self.clock = what, backoff_s, clock
        self.failing = False
        self.retry_at = 0.0

    def allows(self) -> bool:
        return not self.failing or self.clock() >= self.retry_at

    def failed(self, exc: BaseException, doing: str) -> None:
        if not self.failing:
            logger.warning("response cache (%s) failed while %s (%s): requests are generated without it; "
                           "tried again every %.0f s", self.what, doing, _describe(exc), self.backoff_s)
        self.failing = True
        self.retry_at = self.clock() + self.backoff_s

    def succeeded(self) -> None:
        if self.failing:
            logger.warning("response cache (%s) answers again", self.what)
        self.failing = False


class ResponseCache(Step):
    def __init__(self, store: Store, model: str, *, context: Mapping[str, object] | None = None,
                 timeout_s: float = 0.1, backoff_s: float = 5.0, max_value_bytes: int = 64 * 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.model = model  # cache.keys.model_identity of the served model
        self.context = dict(context or {})
        self.timeout_s = timeout_s
        self.max_value_bytes = max_value_bytes
        self.backoff = Backoff(store.kind, backoff_s, clock)

    async def before(self, items: Sequence[Item], call: Call) -> None:
        todo = [item for item in items if item.summary is None]
        if not todo:
            return
        keys = [cache_key(self.model, call.settings, item.dialogue, self.context) for item in todo]
        for item, key in zip(todo, keys, strict=True):
            item.facts[KEY_FACT] = key
        values = await self._guarded("looking up", self.store.get_many(keys))
        if values is None:
            return self._report(call, "cache_lookups", {ERROR: len(todo)})
        results: Counter[str] = Counter()
        for item, value in zip(todo, values, strict=True):
            item.summary, derived = _decode(value) if value is not None else (None, {})
            item.derived.update(derived)
            results[HIT if item.summary is not None else MISS] += 1
        self._report(call, "cache_lookups", results)

    async def after(self, items: Sequence[Item], call: Call) -> None:
        entries: dict[str, bytes] = {}
        results: Counter[str] = Counter()
        for item in items:
            key = item.facts.get(KEY_FACT)
            if key is None or item.summary is None or item.summary.cached:
                continue
            value = _encode(item)
            if len(value) > self.max_value_bytes:
                results[TOO_LARGE] += 1
            else:
                entries[key] = value
        if entries:
            done = await self._guarded("storing", self.store.set_many(entries), none_is_ok=True)
            results[STORED if done is not _FAILED else ERROR] += len(entries)
        if results:
            self._report(call, "cache_stores", results)

    async def close(self) -> None:
        await self.store.close()

    async def _guarded(self, doing: str, operation, none_is_ok: bool = False):
        """The operation's result within ``timeout_s``, or None (``_FAILED`` when ``none_is_ok``) when the
        store failed, timed out or is being left alone after a failure."""
        failed = _FAILED if none_is_ok else None
        if not self.backoff.allows():
            operation.close()  # never awaited: no call made
            return failed
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await operation
        except Exception as exc:  # noqa: BLE001 - a cache that fails never fails the request
            self.backoff.failed(exc, doing)
            return failed
        self.backoff.succeeded()
        return result

    def _report(self, call: Call, what: str, results: Mapping[str, int]) -> None:
        observed = call.observed
        if observed is not None and hasattr(observed, what):
            getattr(observed, what)(dict(results), self.store.kind)


_FAILED = object()


def _encode(item: Item) -> bytes:
    """What a later request needs of this answer: the summary and how it was made, the notices the
    generation added (those after the request's own warnings, which Flow put first) and what the steps
    derived from the dialogue."""
    summary = item.summary
    fields = summary.model_dump(mode="json", exclude=PER_REQUEST)
    fields["notices"] = [n.model_dump(mode="json") for n in summary.warnings[len(item.warnings):]]
    if item.derived:
        fields[DERIVED] = item.derived
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def _decode(value: bytes) -> tuple[Summary | None, dict]:
    """A cached answer as this request's Summary (``cached``) and the ``Item.derived`` kept with it ({} in an
    entry without it); (None, {}) for an entry that no longer reads (written by another version of the
    service: a miss, overwritten by the new answer)."""
    try:
        fields = json.loads(value)
        derived = fields.pop(DERIVED, None)
        notices = [Notice.model_validate(n) for n in fields.pop("notices", [])]
        summary = Summary.model_validate({**fields, "cached": True, "warnings": notices})
    except Exception:  # noqa: BLE001 - an unreadable entry is a miss
        logger.debug("an unreadable response cache entry: treated as a miss", exc_info=True)
        return None, {}
    return summary, derived if isinstance(derived, dict) else {}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within the time limit"
    return f"{type(exc).__name__}: {exc}"
