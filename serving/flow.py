"""What the public service does with a validated request, as named steps (LitServe-style hooks).

    lookup     the response cache: a hit is answered without generating, and brings back what was
               derived from its dialogue when it was generated (``Item.derived``)   (``Step.before``)
    inspect    each dialogue's input statistics and language (a hit's, from ``Item.derived``): drift
               metrics, warnings, or a refusal
    generate   the rest, through the router; a long dialogue in windows, then combined  (``Generation``:
               serving/long_dialogue.py)
    store      the new summaries into the cache; each answer recorded under its request_id, which
               POST /feedback refers to                                          (``Step.after``)

Steps are plugged in from outside (service.py) in order. A step's failure is logged and isolated, so a cache
or feedback store that is down never fails a request; only a ``Refusal`` (a 4xx the client must see) stops it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from serving.errors import ErrorCode
from serving.protocol import GenerationSettings, Notice, Summary

logger = logging.getLogger(__name__)


class Refusal(Exception):
    """A step refuses a request (e.g. a language the service is configured to refuse): answered as a 4xx."""

    def __init__(self, status: int, code: ErrorCode, message: str, field: str | None = None,
                 allowed: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.allowed = status, code, message, field, allowed


@dataclass
class Item:
    """One dialogue on its way through the flow; a step that answers it sets ``summary``."""

    dialogue: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    warnings: list[Notice] = field(default_factory=list)
    summary: Summary | None = None
    facts: dict = field(default_factory=dict)  # what a step learnt about the input, for the steps after it
    # What a step derived from the dialogue text alone (with the served model, which keys the cache), as
    # JSON-ready values under the step's own key: the response cache keeps it with the answer and hands it
    # back on a hit, so the step may take it from here instead of deriving it again. The step that writes a
    # value is the only one that reads it (the cache carries it without looking inside).
    derived: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """What is the same for every item of one request."""

    model: str
    settings: GenerationSettings
    route: str
    observed: Any = None  # the request's telemetry (observability.requests._Summarize), None without it


class Step:
    """No-op base: override what the step does. ``before`` runs in order before generation; ``after`` runs in
    order once every item has its summary (cache hits included)."""

    async def before(self, items: Sequence[Item], call: Call) -> None:
        return None

    async def after(self, items: Sequence[Item], call: Call) -> None:
        return None


class Generation(Protocol):
    """Gives every item it is handed its ``summary`` (raises ``BackendUnavailable`` when no backend could)."""

    async def __call__(self, items: Sequence[Item], call: Call) -> None: ...


class Flow:
    def __init__(self, generation: Generation, steps: Sequence[Step] = ()) -> None:
        self.generation = generation
        self.steps = list(steps)

    async def run(self, dialogues: Sequence[str], call: Call) -> list[Summary]:
        items = [Item(d) for d in dialogues]
        for step in self.steps:
            await self._isolated(step, "before", items, call)
        todo = [i for i in items if i.summary is None]
        if todo:
            await self.generation(todo, call)
        for item in items:
            if item.summary is None:  # a Generation must answer every item it was handed
                raise RuntimeError(f"{type(self.generation).__name__} left a dialogue without a summary")
            item.summary.request_id = item.request_id
            item.summary.warnings = [*item.warnings, *item.summary.warnings]
        for step in self.steps:
            await self._isolated(step, "after", items, call)
        return [item.summary for item in items]

    @staticmethod
    async def _isolated(step: Step, hook: str, items: list[Item], call: Call) -> None:
        try:
            await getattr(step, hook)(items, call)
        except Refusal:
            raise
        except Exception:  # noqa: BLE001 - a step's failure never fails the request
            logger.exception("%s.%s failed; the request goes on without it", type(step).__name__, hook)
