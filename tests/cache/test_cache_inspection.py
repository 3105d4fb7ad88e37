"""The response cache before the input inspection (the order service.py plugs them in): a hit brings back the
statistics its dialogue was inspected with, so it is not tokenized and language-identified again, yet it is
observed for drift and gets the language policy (a warning, or a refusal) like any request. The shipped
model's tokenizer and py3langid's shipped model, as in tests/serving/test_inspection.py."""

from __future__ import annotations

import asyncio

import pytest

from cache import MemoryStore, ResponseCache, cache_key
from serving.flow import Call, Flow, Item, Refusal
from serving.inspection import (STATISTICS, InputInspection, InputStatistics, Inspector, LanguageIdentifier,
                                LanguagePolicy)
from serving.protocol import Summary
from serving.tokenization import ModelTokenizer
from tests.serving.test_inspection import FOREIGN, MODEL_DIR, SETTINGS

ENGLISH = "Amanda: I baked cookies. Do you want some?\nJerry: Sure, I would love some!\nAmanda: Tomorrow then."
GERMAN = FOREIGN["de"][1]


class Counting(Inspector):
    """The real inspector, counting the dialogues it inspects."""

    def __init__(self, min_confidence: float = 0.9) -> None:
        super().__init__(ModelTokenizer(MODEL_DIR), 1024, LanguageIdentifier(min_confidence, 20))
        self.inspected: list[str] = []

    def statistics(self, dialogue: str) -> InputStatistics:
        self.inspected.append(dialogue)
        return super().statistics(dialogue)


class Generator:
    def __init__(self) -> None:
        self.generated: list[str] = []

    async def __call__(self, items, call) -> None:
        for item in items:
            self.generated.append(item.dialogue)
            item.summary = Summary(summary="a summary", model="m:1", backend="onnx-cpu",
                                   input_tokens=item.facts["input_tokens"], output_tokens=3, truncated=False)


@pytest.fixture(scope="module")
def inspector() -> Counting:
    return Counting()


def service(store, inspector, other: str = "warn"):
    """The steps in service.py's order; what the drift monitor was handed."""
    observed: list[InputStatistics] = []
    inspection = InputInspection(inspector, LanguagePolicy(frozenset({"en"}), other), observe=observed.append)
    generator = Generator()
    return Flow(generator, steps=[ResponseCache(store, "model"), inspection]), observed, generator


def run(flow: Flow, dialogues: list[str], route: str = "/summarize_batch"):
    return asyncio.run(flow.run(dialogues, Call("m:1", SETTINGS, route)))


def test_a_hit_is_not_inspected_again_but_observed_and_warned_about(inspector):
    store = MemoryStore(100, 1 << 20, 60)
    flow, observed, generator = service(store, inspector)
    inspector.inspected.clear()
    first = run(flow, [ENGLISH, GERMAN])
    again = run(flow, [GERMAN, ENGLISH, "Tom: Lunch at noon?\nAnna: OK."])
    assert [s.cached for s in first] == [False, False] and [s.cached for s in again] == [True, True, False]
    assert inspector.inspected == [ENGLISH, GERMAN, "Tom: Lunch at noon?\nAnna: OK."]  # the hits were not
    assert generator.generated == inspector.inspected
    # every dialogue of every request is observed for drift, hits included, with the same statistics
    assert [o.language for o in observed] == ["en", "de", "de", "en", "und"]
    assert observed[2] == observed[1] and observed[3] == observed[0]
    # the hit's own warning, as the first answer's, then nothing else
    assert [w.code for w in again[0].warnings] == ["language"] and again[0].warnings == first[1].warnings
    assert again[1].warnings == []


def test_a_hit_in_a_refused_language_is_refused(inspector):
    """A service that warns and one that refuses share a cache (Redis): the refusing one refuses the hit."""
    store = MemoryStore(100, 1 << 20, 60)
    warning, _, _ = service(store, inspector, other="warn")
    refusing, observed, generator = service(store, inspector, other="refuse")
    run(warning, [GERMAN], route="/summarize")
    inspector.inspected.clear()
    with pytest.raises(Refusal) as refused:
        run(refusing, [GERMAN], route="/summarize")
    assert refused.value.status == 422 and refused.value.field == "dialogue" and "German (de" in refused.value.message
    assert inspector.inspected == [] and generator.generated == [] and [o.language for o in observed] == ["de"]


def test_an_entry_without_statistics_or_with_others_is_inspected(inspector):
    store = MemoryStore(100, 1 << 20, 60)
    flow, observed, _ = service(store, inspector)
    run(flow, [ENGLISH], route="/summarize")
    key = cache_key("model", SETTINGS, ENGLISH)
    [entry] = asyncio.run(store.get_many([key]))
    assert b'"derived"' in entry
    # an entry written before statistics were kept (or by another writer): inspected as before
    older = entry[:entry.index(b',"derived"')] + b"}"
    asyncio.run(store.set_many({key: older}))
    inspector.inspected.clear()
    [answer] = run(flow, [ENGLISH], route="/summarize")
    assert answer.cached and inspector.inspected == [ENGLISH] and observed[-1] == observed[0]
    # statistics a differently set up inspector made (another confidence threshold): inspected again
    asyncio.run(store.set_many({key: entry}))
    other, _, _ = service(store, Counting(min_confidence=0.5))
    other_inspector = other.steps[1].inspector
    [answer] = run(other, [ENGLISH], route="/summarize")
    assert answer.cached and other_inspector.inspected == [ENGLISH]


@pytest.mark.parametrize("damage", [{"tokens": "12"}, {"over_context": 0}, {"language": None}, {"extra": 1},
                                    {"speakers": True}])
def test_damaged_statistics_are_not_used(damage):
    values = InputStatistics(tokens=12, over_context=False, speakers=2, language="en", language_confidence=0.99,
                             fragmented_words=0.0).as_dict()
    assert InputStatistics.from_dict(values) is not None
    assert InputStatistics.from_dict({**values, **damage}) is None
    assert InputStatistics.from_dict([1, 2]) is None


def test_statistics_travel_in_item_derived_as_json(inspector):
    step = InputInspection(inspector, LanguagePolicy(frozenset({"en"}), "warn"))
    item = Item(ENGLISH)
    asyncio.run(step.before([item], Call("m:1", SETTINGS, "/summarize")))
    stored = item.derived[STATISTICS]
    assert stored["method"] == inspector.method and "py3langid=" in stored["method"]
    assert InputStatistics(**{k: v for k, v in stored.items() if k != "method"}) == item.facts[STATISTICS]
