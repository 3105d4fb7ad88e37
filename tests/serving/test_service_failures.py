"""When backends fail, hang or the service is full: fallback, its timeout, and 503s a client can act on.

Faults are injected with SUMMARIZER_INJECT_FAULT into a real ``bentoml serve`` of the tiny BART (no GPU
here: PyTorch runs on CPU when it is made the primary).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from harness import bentoml_serve
from serving.errors import ErrorBody, ErrorCode

DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"
PRIMARY_TIMEOUT_S = 2.0


def post(url: str, route: str = "/summarize", **body) -> httpx.Response:
    return httpx.post(url + route, json=body or {"dialogue": DIALOGUE}, timeout=60)


def unavailable(response: httpx.Response) -> ErrorBody:
    """The 503 of a service with no backend that can answer: retry in 5 s, reason 'unavailable'."""
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    error = ErrorBody.model_validate(response.json())
    assert error.code is ErrorCode.UNAVAILABLE
    return error


@pytest.fixture(scope="module")
def hung_primary(tiny_model, serve_env, tmp_path_factory):
    """PyTorch primary that never answers, ONNX fallback, a 2 s primary timeout and room for 3 requests."""
    env = serve_env(tiny_model, SUMMARIZER_PRIMARY="torch", SUMMARIZER_FALLBACK="onnx",
                    SUMMARIZER_INJECT_FAULT="torch:hang", SUMMARIZER_PRIMARY_TIMEOUT_S=str(PRIMARY_TIMEOUT_S),
                    SUMMARIZER_MAX_PENDING="3")
    served = bentoml_serve(tmp_path_factory.mktemp("hung") / "serve.log", env).start()
    yield served
    served.stop(grace_s=5)  # the hung PyTorch worker sleeps through SIGTERM: no point waiting 30 s for it


def test_the_fallback_answers_once_the_primary_timeout_has_passed(hung_primary):
    started = time.perf_counter()
    response = post(hung_primary.url)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["fallback"] is True and summary["backend"] == "onnx-cpu" and summary["summary"]
    # Not before SUMMARIZER_PRIMARY_TIMEOUT_S, and nowhere near the 30 s default.
    assert PRIMARY_TIMEOUT_S <= elapsed < PRIMARY_TIMEOUT_S + 8, f"answered after {elapsed:.1f}s"
    assert summary["duration_ms"] >= PRIMARY_TIMEOUT_S * 1000


def test_past_max_pending_requests_get_503_overloaded_at_once(hung_primary):
    async def flood():
        async with httpx.AsyncClient(timeout=60) as http:
            async def one():
                started = time.perf_counter()
                response = await http.post(hung_primary.url + "/summarize", json={"dialogue": DIALOGUE})
                return response, time.perf_counter() - started
            return await asyncio.gather(*(one() for _ in range(10)))

    responses = asyncio.run(flood())
    codes = sorted(r.status_code for r, _ in responses)
    assert set(codes) <= {200, 503}, codes
    assert 1 <= codes.count(200) <= 3, "at most SUMMARIZER_MAX_PENDING are admitted, and they are answered"
    assert all(r.json()["fallback"] for r, _ in responses if r.status_code == 200)
    rejected = [(r, seconds) for r, seconds in responses if r.status_code == 503]
    assert len(rejected) >= 7
    for response, seconds in rejected:
        assert response.headers["retry-after"] == "1"
        error = ErrorBody.model_validate(response.json())
        assert error.code is ErrorCode.OVERLOADED and "SUMMARIZER_MAX_PENDING" in error.message
        assert seconds < PRIMARY_TIMEOUT_S, "refused at once, not after the primary timeout"


def test_an_error_in_the_primary_falls_back(tiny_model, serve_env, tmp_path):
    env = serve_env(tiny_model, SUMMARIZER_PRIMARY="torch", SUMMARIZER_FALLBACK="onnx",
                    SUMMARIZER_INJECT_FAULT="torch:error")
    with bentoml_serve(tmp_path / "serve.log", env) as served:
        response = post(served.url, "/summarize_batch", dialogues=[DIALOGUE, "Tom: Lunch at 12?\nAnna: OK"])
        assert response.status_code == 200, response.text
        summaries = response.json()["summaries"]
        assert [(s["backend"], s["fallback"]) for s in summaries] == [("onnx-cpu", True)] * 2
        assert "primary backend torch failed (InjectedFault" in served.log()


def test_without_a_fallback_an_error_is_a_503_unavailable(tiny_model, serve_env, tmp_path):
    env = serve_env(tiny_model, SUMMARIZER_INJECT_FAULT="onnx:error")  # ONNX primary; no fallback on a CPU
    with bentoml_serve(tmp_path / "serve.log", env) as served:
        error = unavailable(post(served.url))
        assert "no fallback backend is configured (SUMMARIZER_FALLBACK)" in error.message
        assert "InjectedFault" in error.message


def test_when_both_backends_fail_the_answer_is_a_503_unavailable(tiny_model, serve_env, tmp_path):
    env = serve_env(tiny_model, SUMMARIZER_PRIMARY="torch", SUMMARIZER_FALLBACK="onnx",
                    SUMMARIZER_INJECT_FAULT="torch:error,onnx:error")
    with bentoml_serve(tmp_path / "serve.log", env) as served:
        for route, body in (("/summarize", {"dialogue": DIALOGUE}), ("/summarize_batch", {"dialogues": [DIALOGUE]})):
            error = unavailable(post(served.url, route, **body))
            assert error.message.startswith("no backend could summarize: torch backend failed (InjectedFault")
            assert "fallback onnx failed too (InjectedFault" in error.message
        assert httpx.get(served.url + "/livez", timeout=10).status_code == 200, "failing requests do not kill it"
