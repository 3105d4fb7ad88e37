"""BentoML's request timeout (``traffic.timeout``), with its timer cancelled when the request is answered.

BentoML 1.4.40's ``TimeoutMiddleware`` schedules ``loop.call_later(timeout, ...)`` for every HTTP request and
never cancels it. asyncio's timer handle holds a copy of the request's ``contextvars`` context, and through
it the request's OpenTelemetry span, BentoML's request and response context and what they reference: each
request's objects stayed alive for the whole timeout (120 s), after the request had long been answered.
Under 2x overload (bench/probes.py, ~90 requests/s counting the 503s) the public service held 170,000 such
objects after a minute (5,800 timer handles, 11,000 contexts, 4,600 spans: ``gc.get_objects(2)``), and each
full garbage collection traversed them all: 30 ms, then up to 185 ms every 12 s, pausing the event loop,
/livez with it. ``install()`` puts ``CancellingTimeoutMiddleware`` in BentoML's place: the same contract
(504, with an ErrorBody, when nothing was sent within the timeout; once the response has started, no limit), and the timer is
cancelled as soon as the request is done, which releases the context at once.
"""

from __future__ import annotations

import asyncio

from bentoml._internal.server.http import traffic

from serving.errors import ErrorCode, error_response


class CancellingTimeoutMiddleware(traffic.TimeoutMiddleware):
    """``traffic.TimeoutMiddleware`` whose timer never outlives its request."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started = loop.create_future()  # done when the response starts, or failed by the timer
        timer = loop.call_later(self.timeout, self._set_timer_out, started)

        async def send_started(message) -> None:
            if not started.done():
                started.set_result(None)
            await send(message)

        handled = asyncio.ensure_future(self.app(scope, receive, send_started))
        try:
            await started
        except asyncio.TimeoutError:
            if handled.cancel():
                response = error_response(504, ErrorCode.TIMEOUT, f"no answer within {self.timeout:g} s "
                                          "(SUMMARIZER_REQUEST_TIMEOUT_S); retry later or send fewer dialogues")
                await response(scope, receive, send)
        else:
            await handled
        finally:
            timer.cancel()  # the one change: BentoML's handle kept the request's context for `timeout` seconds


def install() -> None:
    """Make BentoML build its services' apps with ``CancellingTimeoutMiddleware``: its app factory
    (``bentoml._internal.server.base_app``) looks ``TimeoutMiddleware`` up in ``traffic`` when it builds
    an app, so this must run before (at import of service.py, in every worker)."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
