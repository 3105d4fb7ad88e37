"""Two real ``bentoml serve`` processes sharing one real redis-server as their response cache: what one
summarized is a hit on the other; Redis killed mid-run costs nothing but the caching (every request still
200, none hangs, the failure logged once per worker); Redis back, caching resumes after the back-off."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from harness import bentoml_serve
from observability import telemetry
from observability.collector import Collector
from tests.cache.redis_server import NOT_INSTALLED, REDIS_SERVER, RedisServer
from tests.observability.otel_checks import otel_env

GENERATION = {"max_new_tokens": 8}
BACKOFF_S = 1.0
FAILED = "response cache (redis) failed"
RECOVERED = "response cache (redis) answers again"


@pytest.fixture(scope="module")
def shared(tiny_model, serve_env, tmp_path_factory):
    """(redis, [service A, service B], collector): both services with the same SUMMARIZER_CACHE_URL."""
    if REDIS_SERVER is None:
        pytest.skip(NOT_INSTALLED)
    workdir = tmp_path_factory.mktemp("redis_cache")
    redis = RedisServer(workdir).start()
    collector = Collector(workdir / "collector.log").start()
    env = serve_env(tiny_model, SUMMARIZER_CACHE="on", SUMMARIZER_CACHE_URL=redis.url,
                    SUMMARIZER_CACHE_BACKOFF_S=str(BACKOFF_S), **otel_env(collector, "grpc", "grpc"))
    services = [bentoml_serve(workdir / f"serve-{name}.log", env, name=f"bentoml serve {name}") for name in "ab"]
    try:
        with ThreadPoolExecutor(2) as pool:  # a start mostly waits: two together take little longer than one
            for started in [pool.submit(s.start) for s in services]:
                started.result()
        yield redis, services, collector
    finally:
        for service in services:
            service.stop()
        collector.stop()
        if redis.running():
            redis.resume()
        redis.stop(grace_s=5)


def summarize(url: str, dialogue: str) -> tuple[dict, float]:
    started = time.perf_counter()
    resp = httpx.post(url + "/summarize", json={"dialogue": dialogue, "generation": GENERATION}, timeout=60)
    elapsed = time.perf_counter() - started
    assert resp.status_code == 200, resp.text
    return resp.json(), elapsed


def test_a_dialogue_summarized_by_one_service_is_a_hit_on_the_other(shared):
    _, (a, b), _ = shared
    for first, second, dialogue in ((a, b, "Amanda: Cookies?\nJerry: Sure!"), (b, a, "Tom: Lunch?\nAnna: OK.")):
        generated, _ = summarize(first.url, dialogue)
        cached, _ = summarize(second.url, dialogue)
        assert generated["cached"] is False and cached["cached"] is True
        assert cached["summary"] == generated["summary"] and cached["request_id"] != generated["request_id"]


def test_redis_killed_mid_run_every_request_is_still_answered_and_caching_resumes_when_it_is_back(shared):
    redis, (a, b), collector = shared
    dialogue = "Lena: Did the parcel arrive?\nMax: Yes, this morning!"
    summarize(a.url, dialogue)
    assert summarize(b.url, dialogue)[0]["cached"] is True
    # a miss of this size takes (generation included) about this long while Redis is up
    _, up_s = summarize(a.url, "Sam: Meeting at 3?\nKim: Yes, room 4B.")
    redis.kill()
    answers = [summarize(service.url, text) for text in (dialogue, "Ann: New text?\nBob: Yes.") for service in (a, b)
               for _ in range(3)]
    assert all(answer["cached"] is False and answer["summary"] is not None for answer, _ in answers)
    # no hang: at most one request per service waited for the cache's timeout (0.1 s) or a refused connection
    assert max(elapsed for _, elapsed in answers) < up_s + 2.0, (up_s, [round(e, 3) for _, e in answers])
    for service in (a, b):
        assert service.log().count(FAILED) == 1, service.log_tail()  # once, not per request

    redis.start()  # again, on the same port: an empty Redis
    time.sleep(BACKOFF_S + 0.2)
    summarize(a.url, dialogue)  # tried again after the back-off: stored
    assert summarize(b.url, dialogue)[0]["cached"] is True
    for service in (a, b):
        assert service.log().count(RECOVERED) == 1, service.log_tail()
    errors = collector.wait_for(lambda r: r.total(telemetry.CACHE_LOOKUPS, **{telemetry.CACHE_RESULT: "error"}) >= 12,
                                timeout_s=30)
    assert errors.total(telemetry.CACHE_LOOKUPS, **{telemetry.CACHE_RESULT: "error",
                                                    telemetry.CACHE_STORE: "redis"}) == 12
