"""The response cache: the same (model, generation settings, dialogue) answered once, then from the cache.

    keys.py     what an answer is filed under (model identity, settings, dialogue, answer-changing settings)
    stores.py   in this process (bounded by entries and bytes, with a TTL) or in Redis (shared, with a TTL)
    step.py     the flow step: look up before generation, store after it; failures isolated and backed off

service.py adds ``from_config(CONFIG, STORED)`` to the flow's steps (a step that does nothing when
SUMMARIZER_CACHE=off).
"""

from __future__ import annotations

from cache.keys import ANSWER_SETTINGS, answer_context, cache_key, model_identity
from cache.step import ResponseCache
from cache.stores import MemoryStore, RedisStore, Store
from serving.flow import Step


def from_config(config, stored) -> Step:
    """The response cache a ServingConfig asks for, for the stored model ``stored``: Redis when
    SUMMARIZER_CACHE_URL is set, else this process's memory; a step that does nothing when SUMMARIZER_CACHE=off."""
    if not config.cache:
        return Step()
    store: Store
    if config.cache_url is not None:
        store = RedisStore(config.cache_url.get_secret_value(), ttl_s=config.cache_ttl_s,
                           timeout_s=config.cache_timeout_s)
    else:
        store = MemoryStore(config.cache_max_entries, config.cache_max_bytes, ttl_s=config.cache_ttl_s)
    return ResponseCache(store, model_identity(stored), context=answer_context(config),
                         timeout_s=config.cache_timeout_s, backoff_s=config.cache_backoff_s,
                         max_value_bytes=config.cache_max_value_bytes)


__all__ = ["ANSWER_SETTINGS", "MemoryStore", "RedisStore", "ResponseCache", "Store", "answer_context", "cache_key",
           "from_config", "model_identity"]
