"""What a caller sees when the summarizer cannot answer: one line naming the URL and the cause, at once."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import AsyncSummarizerClient, ErrorCode, ServiceError, ServiceUnreachable, SummarizerClient
from harness import bentoml_serve, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DIALOGUE = "Tom: Lunch at 12?\nAnna: OK"


@pytest.fixture(scope="module")
def failing_server(tiny_model, serve_env, tmp_path_factory):
    """ONNX Runtime, the only backend without a GPU, fails every batch: the service has no one to ask."""
    log = tmp_path_factory.mktemp("client-errors") / "serve.log"
    with bentoml_serve(log, serve_env(tiny_model, SUMMARIZER_INJECT_FAULT="onnx:error")) as served:
        yield served


@pytest.fixture
def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_no_backend_is_a_503_with_its_reason_and_retry_after(failing_server):
    with SummarizerClient(failing_server.url) as client, pytest.raises(ServiceError) as refused:
        client.summarize(DIALOGUE)
    error = refused.value
    assert (error.status, error.code, error.retry_after_s) == (503, ErrorCode.UNAVAILABLE, 5.0)
    assert "onnx" in error.message and not error.message.startswith("{")  # the body's text, not the JSON

    async def batch():
        async with AsyncSummarizerClient(failing_server.url) as client:
            await client.summarize_batch([DIALOGUE, DIALOGUE])

    with pytest.raises(ServiceError) as refused:
        asyncio.run(batch())
    assert (refused.value.status, refused.value.code) == (503, ErrorCode.UNAVAILABLE)


def test_connection_refused_names_the_url(closed_url):
    with SummarizerClient(closed_url) as client:
        with pytest.raises(ServiceUnreachable) as failed:
            client.summarize(DIALOGUE)
        assert client.ready() is False  # a probe answers, it does not raise
    assert str(failed.value) == f"cannot reach the summarizer at {closed_url}: connection refused"

    async def call():
        async with AsyncSummarizerClient(closed_url) as client:
            assert await client.ready() is False
            await client.model()

    with pytest.raises(ServiceUnreachable, match="connection refused"):  # asyncio wraps it once more
        asyncio.run(call())


def test_unknown_host_is_named():
    with SummarizerClient("http://summarizer.invalid:3000") as client, pytest.raises(ServiceUnreachable) as failed:
        client.model()
    assert "cannot resolve the host name 'summarizer.invalid'" in str(failed.value)


def test_a_silent_service_is_a_read_timeout():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections (kernel backlog), never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with SummarizerClient(url, timeout_s=0.5) as client:
            with pytest.raises(ServiceUnreachable) as failed:
                client.summarize(DIALOGUE)
            assert client.ready() is False  # a hung service is not ready
    assert str(failed.value) == f"cannot reach the summarizer at {url}: no answer within 0.5 s (read timeout)"


def test_a_url_without_scheme_is_refused_with_a_valid_example():
    with pytest.raises(ValueError, match="http://localhost:3000"):
        SummarizerClient("localhost:3000")


def test_cli_fails_at_once_on_a_wrong_url(closed_url, tmp_path):
    (tmp_path / "chat.txt").write_text(DIALOGUE)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "client", str(tmp_path / "chat.txt"), "--url", closed_url],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    elapsed_s = time.perf_counter() - started
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: cannot reach the summarizer at {closed_url}: connection refused\n"
    assert elapsed_s < 2.0, f"a refused connection must fail at once, took {elapsed_s:.1f} s"


def test_eval_fails_with_one_line_on_a_wrong_url(closed_url):
    done = subprocess.run([sys.executable, "-m", "eval", "gate", "--url", closed_url, "--no-progress"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == f"error: cannot reach the summarizer at {closed_url}: connection refused\n"
