"""AdmissionControl: past SUMMARIZER_MAX_PENDING requests in progress, a summarize route answers 503 at once.

Driven with plain ASGI calls around an app that holds each request until the test lets it go.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from serving.admission import AdmissionControl
from serving.errors import ErrorBody, ErrorCode

pytestmark = pytest.mark.anyio

LIMITED = ("/summarize", "/summarize_batch")


@pytest.fixture
def anyio_backend():
    return "asyncio"


class HeldApp:
    """An ASGI app that answers 200 once ``release`` is set (or raises, when told to)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self.fail = False

    async def __call__(self, scope, receive, send):
        self.entered += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the app failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def request(app, path: str, scope_type: str = "http") -> list[dict]:
    """The ASGI messages ``app`` sends for one request to ``path``."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": scope_type, "path": path, "method": "POST", "headers": []}, receive, send)
    return sent


def status_of(messages: list[dict]) -> int:
    return next(m["status"] for m in messages if m["type"] == "http.response.start")


async def until(condition, timeout_s: float = 2.0) -> None:
    """Wait until ``condition()`` holds; fail after ``timeout_s`` rather than hang."""
    async def poll():
        while not condition():
            await asyncio.sleep(0.001)
    await asyncio.wait_for(poll(), timeout_s)


async def fill(control: AdmissionControl, held: HeldApp, count: int, path: str = "/summarize") -> list[asyncio.Task]:
    tasks = [asyncio.create_task(request(control, path)) for _ in range(count)]
    await until(lambda: held.entered >= count)
    return tasks


async def test_the_request_past_the_limit_gets_503_overloaded_at_once():
    held = HeldApp()
    control = AdmissionControl(held, max_pending=3, paths=LIMITED)
    admitted = await fill(control, held, 3)
    assert control.pending == 3
    for path in LIMITED:
        messages = await asyncio.wait_for(request(control, path), timeout=1.0)  # not queued behind the held ones
        start = messages[0]
        assert start["status"] == 503
        headers = dict(start["headers"])
        assert headers[b"retry-after"] == b"1"
        assert headers[b"content-type"] == b"application/json"
        body = messages[1]["body"]
        assert int(headers[b"content-length"]) == len(body)
        error = ErrorBody.model_validate(json.loads(body))
        assert error.code is ErrorCode.OVERLOADED
        assert "SUMMARIZER_MAX_PENDING" in error.message and "limit 3" in error.message
    assert held.entered == 3, "a refused request never reaches the app"
    held.release.set()
    assert [status_of(m) for m in await asyncio.gather(*admitted)] == [200, 200, 200]
    assert control.pending == 0


async def test_both_summarize_routes_share_one_limit():
    held = HeldApp()
    control = AdmissionControl(held, max_pending=2, paths=LIMITED)
    admitted = [*await fill(control, held, 1, "/summarize"),
                asyncio.create_task(request(control, "/summarize_batch"))]
    await until(lambda: held.entered >= 2)
    assert status_of(await request(control, "/summarize")) == 503
    held.release.set()
    await asyncio.gather(*admitted)


@pytest.mark.parametrize("path", ["/readyz", "/livez", "/metrics", "/model", "/summarize/extra"])
async def test_other_paths_are_never_limited(path):
    held = HeldApp()
    control = AdmissionControl(held, max_pending=1, paths=LIMITED)
    admitted = await fill(control, held, 1)
    other = asyncio.create_task(request(control, path))
    await until(lambda: held.entered >= 2)  # it reached the app although the limit is reached
    assert control.pending == 1, "other paths are not counted"
    held.release.set()
    assert status_of(await other) == 200
    await asyncio.gather(*admitted)


async def test_non_http_scopes_pass_through():
    held = HeldApp()
    held.release.set()
    control = AdmissionControl(held, max_pending=1, paths=LIMITED)
    await request(control, "/summarize", scope_type="websocket")
    assert held.entered == 1 and control.pending == 0


async def test_the_count_returns_to_zero_when_requests_raise():
    held = HeldApp()
    control = AdmissionControl(held, max_pending=2, paths=LIMITED)
    admitted = await fill(control, held, 2)
    held.fail = True
    held.release.set()
    outcomes = await asyncio.gather(*admitted, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert control.pending == 0
    held.fail = False
    assert status_of(await request(control, "/summarize")) == 200, "capacity is free again"


async def test_the_count_returns_to_zero_when_a_request_is_cancelled():
    held = HeldApp()
    control = AdmissionControl(held, max_pending=1, paths=LIMITED)
    [admitted] = await fill(control, held, 1)
    admitted.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await admitted
    assert control.pending == 0


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        AdmissionControl(HeldApp(), max_pending=0, paths=LIMITED)
