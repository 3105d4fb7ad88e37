"""The response cache without a service: its key, its bounds, what it stores and what it does when its store
fails or hangs (a real redis-server where Redis is meant)."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace

import pytest

from cache import MemoryStore, RedisStore, ResponseCache, cache_key, model_identity
from cache.step import KEY_FACT
from serving.flow import Call, Flow, Item
from serving.protocol import GenerationSettings, Notice, Summary
from serving.routing import BackendUnavailable

SETTINGS = GenerationSettings(num_beams=4, max_new_tokens=60, min_new_tokens=0, length_penalty=1.0,
                              no_repeat_ngram_size=3)
DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!"


def stored(tag: str, sha256: dict[str, str]):
    """What model_identity reads of a BentoML model: its tag and the file hashes recorded at import."""
    return SimpleNamespace(tag=tag, info=SimpleNamespace(metadata={"sha256": sha256}, creation_time="t"))


# --------------------------------------------------------------------------- the key


def test_the_key_is_the_same_for_the_same_answer_and_changes_with_everything_that_changes_it():
    key = cache_key("model", SETTINGS, DIALOGUE)
    assert key == cache_key("model", SETTINGS.model_copy(), str(DIALOGUE))
    different = [cache_key("other model", SETTINGS, DIALOGUE),
                 cache_key("model", SETTINGS, DIALOGUE + " "),  # the tokenizer sees whitespace
                 cache_key("model", SETTINGS, DIALOGUE, {"long_window_tokens": 512})]
    for field, value in {"num_beams": 2, "max_new_tokens": 61, "min_new_tokens": 1, "length_penalty": 1.5,
                         "no_repeat_ngram_size": 0}.items():
        different.append(cache_key("model", SETTINGS.model_copy(update={field: value}), DIALOGUE))
    assert len({key, *different}) == len(different) + 1
    assert DIALOGUE not in key and "Amanda" not in key  # a hash: no text of the dialogue in the key


def test_a_model_re_imported_under_the_same_tag_with_new_weights_has_another_identity():
    old = model_identity(stored("dialogue-bart-small:abc", {"hf/model.safetensors": "11", "onnx/x.onnx": "22"}))
    assert old == model_identity(stored("dialogue-bart-small:abc", {"onnx/x.onnx": "22", "hf/model.safetensors": "11"}))
    assert old != model_identity(stored("dialogue-bart-small:abc", {"hf/model.safetensors": "33", "onnx/x.onnx": "22"}))
    assert old != model_identity(stored("dialogue-bart-small:def", {"hf/model.safetensors": "11", "onnx/x.onnx": "22"}))


def test_the_identity_of_a_real_stored_model_names_its_files(tiny_model):
    from model_store.store import get_model

    model = get_model(tiny_model)
    recorded = model.info.metadata["sha256"]  # at import: every file of the model
    assert any(rel.startswith("onnx/") for rel in recorded) and any(rel.startswith("hf/") for rel in recorded)
    assert model_identity(model) == model_identity(stored(str(model.tag), dict(recorded)))
    weights = next(rel for rel in recorded if rel.endswith(".safetensors"))
    assert model_identity(model) != model_identity(stored(str(model.tag), {**recorded, weights: "0" * 64}))


# --------------------------------------------------------------------------- the in-process store's bounds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_memory_is_bounded_by_entries_least_recently_used_first():
    store = MemoryStore(max_entries=3, max_bytes=1 << 20, ttl_s=60)
    run(store.set_many({"a": b"1", "b": b"2", "c": b"3"}))
    assert run(store.get_many(["a"])) == [b"1"]  # a is now the most recently used
    run(store.set_many({"d": b"4"}))
    assert len(store) == 3
    assert run(store.get_many(["a", "b", "c", "d"])) == [b"1", None, b"3", b"4"]


def test_memory_is_bounded_by_bytes():
    store = MemoryStore(max_entries=1000, max_bytes=100, ttl_s=60)
    run(store.set_many({f"k{i}": bytes(40) for i in range(5)}))
    assert len(store) == 2 and store.size_bytes == 80
    assert run(store.get_many(["k3", "k4"])) == [bytes(40), bytes(40)]
    run(store.set_many({"huge": bytes(101)}))  # larger than the whole cache: not stored, nothing evicted
    assert run(store.get_many(["huge"])) == [None] and len(store) == 2


def test_memory_entries_expire():
    clock = Clock()
    store = MemoryStore(max_entries=10, max_bytes=1000, ttl_s=60, timer=clock)
    run(store.set_many({"a": b"1"}))
    clock.now += 59
    assert run(store.get_many(["a"])) == [b"1"]
    clock.now += 2
    assert run(store.get_many(["a"])) == [None] and len(store) == 0


# --------------------------------------------------------------------------- the flow step


class Generator:
    """A Generation that counts what it generates; fails when told to."""

    def __init__(self, summary_chars: int = 20) -> None:
        self.generated: list[str] = []
        self.summary_chars = summary_chars
        self.fail = False

    async def __call__(self, items, call) -> None:
        if self.fail:
            raise BackendUnavailable("no backend", [])
        for item in items:
            self.generated.append(item.dialogue)
            item.summary = Summary(summary=("summary of " + item.dialogue)[:self.summary_chars].ljust(
                self.summary_chars, "."), model="m:1", backend="onnx-cpu", input_tokens=12, output_tokens=5,
                truncated=False, warnings=[Notice(code="windows", message="summarized in 2 windows")])


class Language:
    """A step before the cache that warns about this request's input (as the drift step does)."""

    async def before(self, items, call) -> None:
        for item in items:
            item.warnings.append(Notice(code="language", message=f"request {call.route}"))

    async def after(self, items, call) -> None:
        return None


class Observed:
    """What the cache reports to the request's telemetry handle."""

    def __init__(self) -> None:
        self.lookups: dict[str, int] = {}
        self.stores: dict[str, int] = {}

    def cache_lookups(self, results, store) -> None:
        for k, v in results.items():
            self.lookups[k] = self.lookups.get(k, 0) + v

    def cache_stores(self, results, store) -> None:
        for k, v in results.items():
            self.stores[k] = self.stores.get(k, 0) + v


def call(route: str = "/summarize", settings: GenerationSettings = SETTINGS, observed=None) -> Call:
    return Call("m:1", settings, route, observed)


def flow_with(cache: ResponseCache, generator: Generator) -> Flow:
    return Flow(generator, steps=[Language(), cache])


def test_a_hit_is_the_cached_answer_with_this_requests_own_facts():
    generator, observed = Generator(), Observed()
    flow = flow_with(ResponseCache(MemoryStore(100, 1 << 20, 60), "model"), generator)
    [first] = run(flow.run([DIALOGUE], call("/summarize", observed=observed)))
    [second, other] = run(flow.run([DIALOGUE, "Tom: Lunch?\nAnna: OK."], call("/summarize_batch", observed=observed)))
    assert generator.generated == [DIALOGUE, "Tom: Lunch?\nAnna: OK."]
    assert not first.cached and second.cached and not other.cached
    assert second.request_id and second.request_id != first.request_id
    same = {"request_id", "cached", "warnings"}
    assert second.model_dump(exclude=same) == first.model_dump(exclude=same)
    # this request's warning first, then the generation's own notice, kept with the answer
    assert [(w.code, w.message) for w in second.warnings] == [("language", "request /summarize_batch"),
                                                               ("windows", "summarized in 2 windows")]
    assert observed.lookups == {"miss": 2, "hit": 1} and observed.stores == {"stored": 2}


def test_other_settings_are_a_miss():
    generator = Generator()
    flow = flow_with(ResponseCache(MemoryStore(100, 1 << 20, 60), "model"), generator)
    run(flow.run([DIALOGUE], call()))
    [again] = run(flow.run([DIALOGUE], call(settings=SETTINGS.model_copy(update={"num_beams": 1}))))
    assert not again.cached and len(generator.generated) == 2


def test_a_hit_is_not_stored_again_and_a_failed_generation_stores_nothing():
    class Recording(MemoryStore):
        def __init__(self) -> None:
            super().__init__(100, 1 << 20, 60)
            self.sets: list[list[str]] = []

        async def set_many(self, entries):
            self.sets.append(sorted(entries))
            await super().set_many(entries)

    store, generator = Recording(), Generator()
    flow = flow_with(ResponseCache(store, "model"), generator)
    run(flow.run([DIALOGUE], call()))
    run(flow.run([DIALOGUE], call()))
    assert len(store.sets) == 1
    generator.fail = True
    with pytest.raises(BackendUnavailable):
        run(flow.run(["Tom: Lunch?"], call()))
    assert len(store.sets) == 1 and len(store) == 1


def test_an_answer_larger_than_the_value_limit_is_not_stored():
    observed = Observed()
    cache = ResponseCache(MemoryStore(100, 1 << 20, 60), "model", max_value_bytes=400)
    generator = Generator(summary_chars=1000)
    flow = flow_with(cache, generator)
    run(flow.run([DIALOGUE], call(observed=observed)))
    [again] = run(flow.run([DIALOGUE], call(observed=observed)))
    assert not again.cached and len(cache.store) == 0
    assert observed.stores == {"too_large": 2} and observed.lookups == {"miss": 2}


def test_an_entry_that_no_longer_reads_is_a_miss_and_is_replaced():
    store = MemoryStore(100, 1 << 20, 60)
    generator = Generator()
    flow = flow_with(ResponseCache(store, "model"), generator)
    key = cache_key("model", SETTINGS, DIALOGUE)
    run(store.set_many({key: b'{"summary": "written by another version"}'}))
    [answer] = run(flow.run([DIALOGUE], call()))
    assert not answer.cached and generator.generated == [DIALOGUE]
    assert b"summary of" in run(store.get_many([key]))[0]


class Broken:
    """A store that fails (or hangs) on every call while ``fail``, and counts the calls; else a MemoryStore."""

    kind = "broken"

    def __init__(self, hang_s: float = 0.0) -> None:
        self.calls = 0
        self.hang_s = hang_s
        self.fail = True
        self.memory = MemoryStore(100, 1 << 20, 60)

    async def get_many(self, keys):
        self.calls += 1
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        if self.fail:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        return await self.memory.get_many(keys)

    async def set_many(self, entries):
        self.calls += 1
        if self.fail:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        await self.memory.set_many(entries)

    async def close(self):
        return None


def test_a_failing_cache_never_fails_a_request_backs_off_and_logs_once(caplog):
    clock, store, observed, generator = Clock(), Broken(), Observed(), Generator()
    flow = flow_with(ResponseCache(store, "model", backoff_s=5.0, clock=clock), generator)
    with caplog.at_level(logging.WARNING, logger="cache.step"):
        for _ in range(3):
            [answer] = run(flow.run([DIALOGUE], call(observed=observed)))
            assert answer.summary.startswith("summary of") and not answer.cached
    assert store.calls == 1  # the first lookup failed; the rest waited for the back-off to pass
    assert observed.lookups == {"error": 3} and observed.stores == {"error": 3}
    clock.now += 5.0
    run(flow.run([DIALOGUE], call(observed=observed)))
    assert store.calls == 2  # tried again after the back-off (and failed again: backing off again)
    store.fail = False
    clock.now += 5.0
    run(flow.run([DIALOGUE], call(observed=observed)))
    [hit] = run(flow.run([DIALOGUE], call(observed=observed)))
    assert hit.cached
    messages = [r.getMessage() for r in caplog.records if r.name == "cache.step"]
    assert len(messages) == 2, messages  # once when it failed, once when it answered again
    assert "ConnectionError" in messages[0] and "answers again" in messages[1]
    assert all("Amanda" not in m for m in messages)


def test_a_hanging_cache_costs_a_request_its_timeout_once():
    store, generator = Broken(hang_s=30.0), Generator()
    flow = flow_with(ResponseCache(store, "model", timeout_s=0.2, backoff_s=60.0), generator)
    started = time.perf_counter()
    [answer] = run(flow.run([DIALOGUE], call()))
    first = time.perf_counter() - started
    started = time.perf_counter()
    run(flow.run([DIALOGUE], call()))
    second = time.perf_counter() - started
    assert answer.summary and not answer.cached
    assert 0.2 <= first < 1.0 and second < 0.1 and store.calls == 1


def test_the_key_travels_from_lookup_to_store_in_the_items_facts():
    cache = ResponseCache(MemoryStore(100, 1 << 20, 60), "model")
    items = [Item(DIALOGUE)]
    run(cache.before(items, call()))
    assert items[0].facts[KEY_FACT] == cache_key("model", SETTINGS, DIALOGUE)


# --------------------------------------------------------------------------- Redis


def test_redis_stores_with_the_ttl_and_answers_in_one_round_trip(redis_server):
    async def scenario():
        store = RedisStore(redis_server.url, ttl_s=120, timeout_s=1.0)
        try:
            await store.set_many({"a": b"1", "b": b"2"})
            values = await store.get_many(["a", "missing", "b"])
            ttl = await store.client.ttl("a")
        finally:
            await store.close()
        return values, ttl

    values, ttl = run(scenario())
    assert values == [b"1", None, b"2"] and 110 <= ttl <= 120


def test_a_redis_that_hangs_or_dies_costs_the_timeout_and_nothing_else(redis_server):
    generator = Generator()

    async def scenario() -> list[tuple[float, Summary]]:
        cache = ResponseCache(RedisStore(redis_server.url, ttl_s=60, timeout_s=0.2), "model", timeout_s=0.2,
                              backoff_s=0.5)
        flow = flow_with(cache, generator)
        timed = []

        async def timed_run():
            started = time.perf_counter()
            [summary] = await flow.run([DIALOGUE], call())
            timed.append((time.perf_counter() - started, summary))

        try:
            await timed_run()  # miss, stored
            await timed_run()  # hit
            redis_server.pause()
            await timed_run()  # the lookup times out; generated
            await timed_run()  # backing off: Redis not asked
            redis_server.resume()
            await asyncio.sleep(0.6)
            await timed_run()  # asked again: the entry is still there
            redis_server.kill()
            await timed_run()  # connection refused: generated
        finally:
            await cache.close()
        return timed

    timed = run(scenario())
    assert [s.cached for _, s in timed] == [False, True, False, False, True, False]
    assert all(s.summary.startswith("summary of") for _, s in timed)
    assert timed[2][0] < 1.0 and timed[3][0] < 0.1 and timed[5][0] < 1.0
