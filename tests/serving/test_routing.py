"""Router: primary first, the fallback when the primary raises, reports a failure or does not answer in time;
a crashed backend (its worker died) retried once and skipped while it is down.

Backend calls are plain coroutines here (no server); what they return is what BentoML's dependency client
hands back: GenerationOutcome models, or dicts when the call went over HTTP.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from bentoml.exceptions import BentoMLException

from serving.protocol import (BackendFailure, BackendName, EngineName, GenerationJob, GenerationOutcome,
                              GenerationResult, GenerationSettings)
from serving.routing import TIMEOUT, Backend, BackendFailed, BackendUnavailable, Router, failure_in, is_crash

pytestmark = pytest.mark.anyio

TORCH, ONNX = BackendName.TORCH, BackendName.ONNX
SETTINGS = GenerationSettings(num_beams=4, max_new_tokens=24, min_new_tokens=0, length_penalty=1.0,
                              no_repeat_ngram_size=3)
JOBS = [GenerationJob(text=f"A: hello {i}\nB: hi", settings=SETTINGS, enqueued_at=time.time()) for i in range(2)]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def result(job: GenerationJob, engine: EngineName) -> GenerationResult:
    return GenerationResult(summary=f"{engine}: {job.text[:10]}", input_tokens=9, output_tokens=3, truncated=False,
                            backend=engine, model="tiny:1", batch_size=1, queue_wait_ms=0.0, generate_ms=1.0,
                            padding_share=0.0)


class FakeBackend:
    """A backend call that answers each job with a result of ``engine``, after an optional behaviour."""

    def __init__(self, name: BackendName, engine: EngineName, *, raises: Exception | None = None,
                 answers=None, delay_s: float = 0.0, block: asyncio.Event | None = None, crashes: int = 0) -> None:
        self.name, self.engine = name, engine
        self.raises, self.answers, self.delay_s, self.block = raises, answers, delay_s, block
        self.crashes = crashes  # the first ``crashes`` calls end as a killed worker's do
        self.calls: list[list[GenerationJob]] = []
        self.up = asyncio.Event()  # its status answers once set (a respawned worker that loaded its model)
        self.up.set()
        self.status_calls = 0

    async def __call__(self, jobs: list[GenerationJob]) -> list:
        self.calls.append(jobs)
        if len(self.calls) <= self.crashes:
            raise aiohttp.ServerDisconnectedError()
        if self.block is not None:
            await self.block.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.raises is not None:
            raise self.raises
        if self.answers is not None:
            return self.answers(jobs)
        return [GenerationOutcome(result=result(job, self.engine)) for job in jobs]

    async def status(self) -> dict:
        self.status_calls += 1
        await self.up.wait()
        return {"backend": self.name, "loaded": True}

    @property
    def backend(self) -> Backend:
        return Backend(self.name, self, self.status)


def torch_backend(**behaviour) -> FakeBackend:
    return FakeBackend(TORCH, EngineName.TORCH_CPU, **behaviour)


def onnx_backend(**behaviour) -> FakeBackend:
    return FakeBackend(ONNX, EngineName.ONNX_CPU, **behaviour)


def router(primary: FakeBackend, fallback: FakeBackend | None, timeout_s: float = 5.0,
           **options) -> tuple[Router, list]:
    seen: list[BackendFailure] = []
    return Router(primary.backend, fallback.backend if fallback else None, timeout_s, on_fallback=seen.append,
                  **options), seen


async def test_a_primary_that_answers_is_used_and_the_fallback_is_not_called():
    primary, fallback = torch_backend(), onnx_backend()
    route, seen = router(primary, fallback)
    routed = await route.generate(JOBS)
    assert (routed.backend, routed.fallback, routed.primary_failure) == (TORCH, False, None)
    assert [r.backend for r in routed.results] == [EngineName.TORCH_CPU] * 2
    assert [r.summary for r in routed.results] == [result(job, EngineName.TORCH_CPU).summary for job in JOBS]
    assert primary.calls == [JOBS] and fallback.calls == [] and seen == []


async def test_answers_over_http_arrive_as_dicts_and_are_read_the_same():
    primary = torch_backend(answers=lambda jobs: [GenerationOutcome(result=result(j, EngineName.TORCH_CPU))
                                                  .model_dump(mode="json") for j in jobs])
    routed = await router(primary, onnx_backend())[0].generate(JOBS)
    assert routed.backend == TORCH and all(isinstance(r, GenerationResult) for r in routed.results)


async def test_a_primary_that_raises_falls_back_and_reports_the_original_error_type():
    primary, fallback = torch_backend(raises=RuntimeError("CUDA error: out of memory")), onnx_backend()
    route, seen = router(primary, fallback)
    routed = await route.generate(JOBS)
    assert (routed.backend, routed.fallback) == (ONNX, True)
    assert [r.backend for r in routed.results] == [EngineName.ONNX_CPU] * 2
    assert fallback.calls == [JOBS], "the fallback gets the same jobs"
    expected = BackendFailure(backend=TORCH, error_type="RuntimeError", message="CUDA error: out of memory")
    assert seen == [expected] and routed.primary_failure == expected


async def test_a_primary_that_answers_with_a_failure_falls_back_with_that_failure():
    failure = BackendFailure(backend=TORCH, error_type="InjectedFault", message="injected")
    primary = torch_backend(answers=lambda jobs: [GenerationOutcome(failure=failure).model_dump() for _ in jobs])
    route, seen = router(primary, onnx_backend())
    routed = await route.generate(JOBS)
    assert routed.fallback and routed.backend == ONNX
    assert seen == [failure], "the backend's own error type, not a wrapper's"


@pytest.mark.parametrize("answers,error_type", [
    (lambda jobs: [GenerationOutcome(result=result(jobs[0], EngineName.TORCH_CPU))], "WrongAnswerCount"),
    (lambda jobs: [GenerationOutcome() for _ in jobs], "EmptyAnswer"),
], ids=["too-few-answers", "neither-result-nor-failure"])
async def test_a_malformed_answer_is_a_failure_of_the_primary(answers, error_type):
    route, seen = router(torch_backend(answers=answers), onnx_backend())
    routed = await route.generate(JOBS)
    assert routed.fallback and [f.error_type for f in seen] == [error_type]
    assert seen[0].backend == TORCH


async def test_a_primary_slower_than_the_timeout_falls_back_after_about_the_timeout():
    timeout_s = 0.3
    route, seen = router(torch_backend(delay_s=30.0), onnx_backend(), timeout_s=timeout_s)
    started = time.perf_counter()
    routed = await route.generate(JOBS)
    elapsed = time.perf_counter() - started
    assert routed.fallback and routed.backend == ONNX
    assert timeout_s - 0.01 <= elapsed < timeout_s + 0.5, f"fallback answered after {elapsed:.3f}s"
    assert [(f.backend, f.error_type) for f in seen] == [(TORCH, TIMEOUT)] and TIMEOUT == "TimeoutError"
    assert "0.3s" in seen[0].message


async def test_without_a_fallback_a_failed_primary_is_unavailable_naming_the_setting():
    route, seen = router(onnx_backend(raises=ValueError("bad batch")), None)
    with pytest.raises(BackendUnavailable) as raised:
        await route.generate(JOBS)
    assert "SUMMARIZER_FALLBACK" in str(raised.value) and "ValueError: bad batch" in str(raised.value)
    assert [(f.backend, f.error_type) for f in raised.value.failures] == [(ONNX, "ValueError")]
    assert seen == [], "no fallback happened"


async def test_when_both_fail_the_error_carries_both_failures():
    route, seen = router(torch_backend(raises=RuntimeError("gpu gone")), onnx_backend(raises=OSError("no file")))
    with pytest.raises(BackendUnavailable) as raised:
        await route.generate(JOBS)
    assert [(f.backend, f.error_type, f.message) for f in raised.value.failures] == [
        (TORCH, "RuntimeError", "gpu gone"), (ONNX, "OSError", "no file")]
    assert "fallback onnx failed too" in str(raised.value)
    assert len(seen) == 1


async def test_a_fallback_gets_no_timeout_of_its_own():
    route, _ = router(torch_backend(delay_s=30.0), onnx_backend(delay_s=0.4), timeout_s=0.1)
    routed = await route.generate(JOBS)
    assert routed.backend == ONNX, "a fallback slower than the primary timeout still answers"


@pytest.mark.parametrize("stage", ["primary", "fallback"])
async def test_cancellation_propagates_and_is_not_a_reason_to_fall_back(stage):
    blocked = asyncio.Event()  # never set
    if stage == "primary":
        primary, fallback = torch_backend(block=blocked), onnx_backend()
    else:
        primary, fallback = torch_backend(raises=RuntimeError("down")), onnx_backend(block=blocked)
    route, seen = router(primary, fallback)
    task = asyncio.create_task(route.generate(JOBS))
    reached = fallback if stage == "fallback" else primary

    async def until_reached():
        while not reached.calls:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(until_reached(), timeout=2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(fallback.calls) == (1 if stage == "fallback" else 0)
    assert len(seen) == (1 if stage == "fallback" else 0)


def test_the_router_refuses_a_fallback_equal_to_the_primary():
    with pytest.raises(ValueError, match="must differ from the primary"):
        Router(torch_backend().backend, torch_backend().backend, 1.0)


@pytest.mark.parametrize("timeout_s", [0, -1.0])
def test_the_router_refuses_a_timeout_that_is_not_positive(timeout_s):
    with pytest.raises(ValueError, match="must be positive"):
        Router(torch_backend().backend, onnx_backend().backend, timeout_s)


def test_failure_in_finds_the_first_failure_in_models_or_dicts():
    failure = BackendFailure(backend=ONNX, error_type="RuntimeError", message="x")
    ok = GenerationOutcome(result=result(JOBS[0], EngineName.ONNX_CPU))
    assert failure_in([ok, GenerationOutcome(failure=failure)]) == failure
    assert failure_in([ok.model_dump(), {"failure": failure.model_dump()}]) == failure
    assert failure_in([ok, ok.model_dump()]) is None


# --------------------------------------------------------------------------- a backend whose worker died


async def until(condition, timeout_s: float = 2.0) -> None:
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout_s)


@pytest.mark.parametrize("exc", [
    aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError(104, "Connection reset by peer"),
    ConnectionRefusedError(111, "Connection refused"), aiohttp.ClientPayloadError("cut short"),
    BentoMLException("Internal Server Error", error_code=500),
], ids=["disconnected", "reset", "refused", "payload", "bare-500"])
def test_a_call_that_ended_without_an_answer_is_a_crash(exc):
    assert is_crash(exc)


@pytest.mark.parametrize("exc", [
    asyncio.TimeoutError(), aiohttp.ServerTimeoutError("read timeout"), ValueError("bad batch"), OSError("no file"),
    BackendFailed(BackendFailure(backend=ONNX, error_type="RuntimeError", message="x")),
    BentoMLException("bad", error_code=400), BentoMLException("timeout", error_code=504),
], ids=["timeout", "aiohttp-timeout", "value-error", "os-error", "backend-failure", "400", "504"])
def test_a_timeout_or_an_answered_failure_is_not_a_crash(exc):
    assert not is_crash(exc)


async def test_without_a_fallback_a_crash_is_retried_once_on_the_same_backend_when_it_answers_again():
    primary = onnx_backend(crashes=1)
    primary.up.clear()  # respawning
    route, seen = router(primary, None)
    task = asyncio.create_task(route.generate(JOBS))
    await until(lambda: primary.status_calls >= 1)
    await asyncio.sleep(0.1)
    assert len(primary.calls) == 1 and not task.done(), "no retry before the backend answers again"
    assert ONNX in route.down() and route.down()[ONNX].error_type == "ServerDisconnectedError"
    primary.up.set()
    routed = await asyncio.wait_for(task, 2.0)
    assert (routed.backend, routed.fallback, routed.retried) == (ONNX, False, True)
    assert len(primary.calls) == 2 and primary.calls[1] == JOBS, "the same jobs, once more"
    assert route.down() == {} and seen == [], "back once its status answered"


async def test_a_crash_is_retried_only_once():
    primary = onnx_backend(crashes=2)
    route, _ = router(primary, None)
    with pytest.raises(BackendUnavailable) as raised:
        await route.generate(JOBS)
    assert len(primary.calls) == 2
    assert [f.error_type for f in raised.value.failures] == ["ServerDisconnectedError"] * 2
    assert "retry failed" in str(raised.value)


async def test_the_retry_waits_no_longer_than_the_requests_deadline():
    primary = onnx_backend(crashes=1)
    primary.up.clear()  # never comes back
    route, _ = router(primary, None, deadline_s=0.3)
    started = time.perf_counter()
    with pytest.raises(BackendUnavailable) as raised:
        await route.generate(JOBS)
    assert time.perf_counter() - started < 1.5
    assert [f.error_type for f in raised.value.failures] == ["ServerDisconnectedError", TIMEOUT]
    assert len(primary.calls) == 1


async def test_with_a_fallback_a_crash_is_retried_there_and_new_requests_skip_the_down_primary():
    primary, fallback = torch_backend(crashes=1), onnx_backend()
    primary.up.clear()
    route, seen = router(primary, fallback)
    first = await route.generate(JOBS)
    assert (first.backend, first.fallback, first.retried) == (ONNX, True, True)
    assert first.primary_failure.error_type == "ServerDisconnectedError"
    # While the primary's worker respawns, new requests go straight to the fallback: no call waits for it.
    second = await route.generate(JOBS)
    assert (second.backend, second.fallback, second.retried) == (ONNX, True, False)
    assert len(primary.calls) == 1 and len(fallback.calls) == 2 and len(seen) == 2
    primary.up.set()
    await until(lambda: route.down() == {})
    third = await route.generate(JOBS)
    assert (third.backend, third.fallback) == (TORCH, False) and len(primary.calls) == 2


async def test_a_fallback_that_crashes_while_the_primary_is_down_is_retried_once_on_itself():
    primary, fallback = torch_backend(crashes=1), onnx_backend()
    primary.up.clear()
    route, _ = router(primary, fallback)
    assert (await route.generate(JOBS)).backend == ONNX and TORCH in route.down()
    fallback.crashes = 2  # its next call crashes, the one after answers
    routed = await route.generate(JOBS)
    assert (routed.backend, routed.fallback, routed.retried) == (ONNX, True, True)
    assert len(primary.calls) == 1 and len(fallback.calls) == 3


async def test_a_crash_of_the_primary_and_then_of_the_fallback_is_unavailable():
    route, _ = router(torch_backend(crashes=1), onnx_backend(crashes=1))
    with pytest.raises(BackendUnavailable) as raised:
        await route.generate(JOBS)
    assert [(f.backend, f.error_type) for f in raised.value.failures] == [
        (TORCH, "ServerDisconnectedError"), (ONNX, "ServerDisconnectedError")]


async def test_a_hung_primary_is_not_marked_down():
    primary, fallback = torch_backend(delay_s=30.0), onnx_backend()
    route, _ = router(primary, fallback, timeout_s=0.1)
    routed = await route.generate(JOBS)
    assert routed.fallback and not routed.retried and route.down() == {}
    await route.generate(JOBS)
    assert len(primary.calls) == 2, "the next request asks the primary again"


async def test_a_failure_the_backend_answered_is_neither_retried_on_it_nor_marks_it_down():
    failure = BackendFailure(backend=ONNX, error_type="InjectedFault", message="injected")
    primary = onnx_backend(answers=lambda jobs: [GenerationOutcome(failure=failure) for _ in jobs])
    route, _ = router(primary, None)
    with pytest.raises(BackendUnavailable):
        await route.generate(JOBS)
    assert len(primary.calls) == 1 and route.down() == {} and primary.status_calls == 0


async def test_concurrent_requests_of_a_crashed_batch_are_all_retried():
    primary = onnx_backend(crashes=4)
    primary.up.clear()
    route, _ = router(primary, None)
    tasks = [asyncio.create_task(route.generate(JOBS)) for _ in range(4)]
    await until(lambda: len(primary.calls) == 4)
    primary.up.set()
    routed = await asyncio.wait_for(asyncio.gather(*tasks), 2.0)
    assert all(r.retried and r.backend == ONNX for r in routed) and len(primary.calls) == 8


async def test_without_a_fallback_a_new_request_waits_for_a_down_backend_instead_of_its_timeout():
    primary = onnx_backend(crashes=1)
    primary.up.clear()
    route, _ = router(primary, None, timeout_s=0.2)  # a respawn outlasts the primary timeout
    first = asyncio.create_task(route.generate(JOBS))
    await until(lambda: ONNX in route.down())
    second = asyncio.create_task(route.generate(JOBS))
    await asyncio.sleep(0.4)
    assert len(primary.calls) == 1 and not second.done(), "no call to the down backend: it would only wait"
    primary.up.set()
    routed = await asyncio.wait_for(second, 2.0)
    assert (routed.backend, routed.retried) == (ONNX, False)
    assert (await first).retried


async def test_a_new_request_waits_for_a_down_backend_no_longer_than_its_deadline():
    primary = onnx_backend(crashes=1)
    primary.up.clear()
    route, _ = router(primary, None, deadline_s=0.3)
    first = asyncio.create_task(route.generate(JOBS))
    await until(lambda: ONNX in route.down())
    with pytest.raises(BackendUnavailable, match="did not answer again") as raised:
        await route.generate(JOBS)
    assert [f.error_type for f in raised.value.failures] == ["ServerDisconnectedError"]
    with pytest.raises(BackendUnavailable):
        await first
