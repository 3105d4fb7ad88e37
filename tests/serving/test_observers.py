"""Observers: what engines and backends report goes through Isolated, so an observer can never fail the work."""

from __future__ import annotations

import logging
import time

import pytest

from serving import backends
from serving.backends import BackendWorker
from serving.config import ServingConfig
from serving.observers import NO_OBSERVER, EngineObserver, GenerationCall, Isolated
from serving.protocol import BackendName, EngineName, GenerationJob, GenerationSettings, Role

SETTINGS = GenerationSettings(num_beams=2, max_new_tokens=8, min_new_tokens=0, length_penalty=1.0,
                              no_repeat_ngram_size=3)
JOBS = [GenerationJob(text="A: hi\nB: hello", settings=SETTINGS, enqueued_at=time.time())]
CALL = GenerationCall(engine=EngineName.ONNX_CPU, model="tiny:1", jobs=JOBS, input_tokens=[7], settings=SETTINGS,
                      padding_share=0.0)


class Recording(EngineObserver):
    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def batch_started(self, backend, jobs):
        self.seen.append(("batch_started", backend, len(jobs)))

    def generation_started(self, call):
        self.seen.append(("generation_started", call.engine))
        return "token-1"

    def generation_finished(self, token, call, output_tokens, error):
        self.seen.append(("generation_finished", token, output_tokens, error))


class Failing(EngineObserver):
    """Every method raises, as a broken exporter would."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self, *args):
        self.calls += 1
        raise RuntimeError("exporter down")

    batch_started = generation_started = generation_finished = _fail


def observer_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "serving.observers" and r.levelno == logging.ERROR]


def test_isolated_passes_every_call_and_return_value_through():
    inner = Recording()
    observer = Isolated(inner)
    observer.batch_started(BackendName.ONNX, JOBS)
    token = observer.generation_started(CALL)
    observer.generation_finished(token, CALL, [5], None)
    assert token == "token-1"
    assert inner.seen == [("batch_started", BackendName.ONNX, 1), ("generation_started", EngineName.ONNX_CPU),
                          ("generation_finished", "token-1", [5], None)]


def test_isolated_swallows_an_observer_error_and_logs_it_once_per_method(caplog):
    inner = Failing()
    observer = Isolated(inner)
    with caplog.at_level(logging.ERROR, logger="serving.observers"):
        for _ in range(3):
            observer.batch_started(BackendName.TORCH, JOBS)
            assert observer.generation_started(CALL) is None
            observer.generation_finished(None, CALL, None, RuntimeError("generate failed"))
    assert inner.calls == 9, "the observer is still called every time"
    messages = observer_errors(caplog)
    assert sorted(messages) == sorted(f"observer Failing.{method} failed; the batch goes on (logged once)"
                                      for method in ("batch_started", "generation_started", "generation_finished"))
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records if r.name == "serving.observers")


def test_isolated_does_not_swallow_an_interrupt():
    class Interrupting(EngineObserver):
        def batch_started(self, backend, jobs):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Isolated(Interrupting()).batch_started(BackendName.ONNX, JOBS)


def test_the_default_observer_does_nothing():
    assert NO_OBSERVER.batch_started(BackendName.ONNX, JOBS) is None
    assert NO_OBSERVER.generation_started(CALL) is None
    assert NO_OBSERVER.generation_finished(None, CALL, [1], None) is None


def test_a_failing_observer_does_not_change_a_backends_answer(monkeypatch, caplog):
    """An idle backend (no model to load) still runs its observer; its answer is its own failure."""
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    config = ServingConfig(primary="onnx", fallback="none")
    worker = BackendWorker(BackendName.TORCH, config, "/no/model/needed", "tiny:1", observer=Failing())
    assert worker.role is Role.IDLE and worker.status().loaded is False
    with caplog.at_level(logging.ERROR):
        [outcome] = worker.generate(JOBS)
    assert outcome.result is None
    assert (outcome.failure.backend, outcome.failure.error_type) == (BackendName.TORCH, "BackendDisabled")
    assert "SUMMARIZER_PRIMARY or SUMMARIZER_FALLBACK" in outcome.failure.message
    assert observer_errors(caplog) == ["observer Failing.batch_started failed; the batch goes on (logged once)"]
