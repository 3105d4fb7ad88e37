"""Router: primary first, the fallback when the primary raises, reports a failure or does not answer in time.

Backend calls are plain coroutines here (no server); what they return is what BentoML's dependency client
hands back: GenerationOutcome models, or dicts when the call went over HTTP.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.protocol import (BackendFailure, BackendName, EngineName, GenerationJob, GenerationOutcome,
                              GenerationResult, GenerationSettings)
from serving.routing import TIMEOUT, Backend, BackendUnavailable, Router, failure_in

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
                 answers=None, delay_s: float = 0.0, block: asyncio.Event | None = None) -> None:
        self.name, self.engine = name, engine
        self.raises, self.answers, self.delay_s, self.block = raises, answers, delay_s, block
        self.calls: list[list[GenerationJob]] = []

    async def __call__(self, jobs: list[GenerationJob]) -> list:
        self.calls.append(jobs)
        if self.block is not None:
            await self.block.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.raises is not None:
            raise self.raises
        if self.answers is not None:
            return self.answers(jobs)
        return [GenerationOutcome(result=result(job, self.engine)) for job in jobs]

    @property
    def backend(self) -> Backend:
        return Backend(self.name, self)


def torch_backend(**behaviour) -> FakeBackend:
    return FakeBackend(TORCH, EngineName.TORCH_CPU, **behaviour)


def onnx_backend(**behaviour) -> FakeBackend:
    return FakeBackend(ONNX, EngineName.ONNX_CPU, **behaviour)


def router(primary: FakeBackend, fallback: FakeBackend | None, timeout_s: float = 5.0) -> tuple[Router, list]:
    seen: list[BackendFailure] = []
    return Router(primary.backend, fallback.backend if fallback else None, timeout_s, on_fallback=seen.append), seen


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
