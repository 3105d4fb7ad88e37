"""serving/request_timeout.py: BentoML's request timeout without the timer (and the request's context) that
outlived every request; installed in place of BentoML's middleware, and still a 504 past the timeout."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref

from bentoml._internal.server.http import traffic

from serving.errors import ErrorBody, ErrorCode
from serving.request_timeout import CancellingTimeoutMiddleware, install

REQUEST_STATE: contextvars.ContextVar = contextvars.ContextVar("request_state")


class RequestState:
    """Stands for what a request puts in its context (BentoML's request context, an OpenTelemetry span)."""


def _app(delay_s: float):
    async def app(scope, receive, send):
        await asyncio.sleep(delay_s)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


def _run_request(middleware_cls, delay_s: float = 0.0, timeout_s: float = 120.0):
    """One request through ``middleware_cls`` in a task of its own, as uvicorn runs each request, with
    request state put in its context before (as BentoML's outer OpenTelemetry middleware puts the span):
    the timers left on the loop afterwards, what was sent, and a weak reference to the request's state."""
    sent: list = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def request() -> weakref.ref:
        state = RequestState()
        REQUEST_STATE.set(state)
        await middleware_cls(_app(delay_s), timeout_s)({"type": "http", "path": "/summarize"}, receive, send)
        return weakref.ref(state)

    async def main():
        state = await asyncio.get_running_loop().create_task(request())
        gc.collect()
        live_timers = [h for h in asyncio.get_running_loop()._scheduled if not h.cancelled()]  # noqa: SLF001
        return live_timers, state

    live_timers, state = asyncio.run(main())
    return live_timers, sent, state


def test_bentomls_middleware_keeps_a_timer_and_the_requests_state_after_answering():
    # the behaviour the replacement exists for (BentoML 1.4.40): if this starts failing, BentoML fixed it
    timers, sent, state = _run_request(_original())
    assert sent[0]["status"] == 200
    assert len(timers) == 1 and state() is not None  # alive for the 120 s of the timer


def test_the_timer_is_cancelled_and_the_requests_state_released_once_answered():
    timers, sent, state = _run_request(CancellingTimeoutMiddleware)
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"
    assert timers == []
    assert state() is None  # nothing holds the request's context any more


def test_a_request_that_sends_nothing_within_the_timeout_still_gets_a_504():
    timers, sent, _ = _run_request(CancellingTimeoutMiddleware, delay_s=1.0, timeout_s=0.05)
    assert sent[0]["status"] == 504
    error = ErrorBody.model_validate_json(sent[1]["body"])
    assert error.code == ErrorCode.TIMEOUT and "within 0.05 s" in error.message
    assert timers == []


def test_install_makes_bentoml_build_apps_with_the_cancelling_middleware():
    from bentoml._internal.server.base_app import BaseAppFactory

    original = traffic.TimeoutMiddleware
    try:
        install()

        class Factory(BaseAppFactory):
            name = "test"

        [middleware] = Factory(timeout=5).middlewares
        assert middleware.cls is CancellingTimeoutMiddleware and middleware.kwargs == {"timeout": 5}
    finally:
        traffic.TimeoutMiddleware = original


def _original():
    """BentoML's own middleware, even if another test installed the replacement."""
    cls = traffic.TimeoutMiddleware
    return cls.__bases__[0] if cls is CancellingTimeoutMiddleware else cls
