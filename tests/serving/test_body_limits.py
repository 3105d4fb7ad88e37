"""Limits before work (serving/body_limits.py) on a real ``bentoml serve``: a body over the route's byte limit is
refused with 413 before it is read whole, a body that does not arrive in time gets 408, and either way the
connection is closed. Raw sockets, so that the test controls exactly what arrives and when."""

from __future__ import annotations

import json
import select
import socket
import time

import httpx
import pytest

from harness import bentoml_serve
from serving.config import ServingConfig
from serving.errors import ErrorBody, ErrorCode

LIMITS = {"SUMMARIZER_MAX_DIALOGUE_CHARS": "1000", "SUMMARIZER_MAX_LIST_ITEMS": "4", "SUMMARIZER_BODY_TIMEOUT_S": "1.5"}
CONFIG = ServingConfig.load(LIMITS)
SINGLE_LIMIT, BATCH_LIMIT = CONFIG.body_limit(1), CONFIG.body_limit(4)  # 22,384 and 40,384 bytes
TIMEOUT_S = CONFIG.body_timeout_s


@pytest.fixture(scope="module")
def server(tiny_model, serve_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("limits") / "serve.log"
    with bentoml_serve(log, serve_env(tiny_model, **LIMITS)) as served:
        yield served


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", httpx.URL(server.url).port), timeout=10)


def _head(route: str, length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST {route} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{framing}\r\n\r\n").encode()


def _answer(sock: socket.socket, wait_s: float = 10.0) -> tuple[int, ErrorBody, bool]:
    """(status, ErrorBody, whether the server closed the connection after it)."""
    sock.settimeout(wait_s)
    data = b""
    closed = False
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        except socket.timeout:
            break
        if not chunk:
            closed = True
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), ErrorBody.model_validate_json(body), closed


def test_the_defaults_leave_room_for_the_largest_valid_request():
    config = ServingConfig.load({})
    assert config.body_limit(1) == 20_000 * 6 + 16_384  # 136,384 bytes: one dialogue
    assert config.body_limit(32) == 32 * 20_000 * 6 + 16_384  # 3,856,384 bytes: a full batch
    assert ServingConfig.load({"SUMMARIZER_MAX_BODY_BYTES": "5000"}).body_limit(32) == 5000
    largest = json.dumps({"dialogues": ["é" * 1000] * 4}).encode()  # \u00e9: 6 bytes a character
    assert len(largest) <= BATCH_LIMIT


def test_a_content_length_over_the_limit_gets_413_before_any_body_byte(server):
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(_head("/summarize", 10_000_000))  # and not one byte of it
        status, error, closed = _answer(sock)
    assert status == 413 and error.code == ErrorCode.BODY_TOO_LARGE and str(SINGLE_LIMIT) in error.message
    assert closed and time.monotonic() - started < TIMEOUT_S  # at once, not after waiting for the body


def test_each_route_has_its_own_limit(server):
    with _connect(server) as sock:
        sock.sendall(_head("/summarize_batch", BATCH_LIMIT + 1))
        status, error, _ = _answer(sock)
    assert status == 413 and str(BATCH_LIMIT) in error.message
    # A length the batch route takes is over the single route's limit.
    with _connect(server) as sock:
        sock.sendall(_head("/summarize", SINGLE_LIMIT + 1))
        assert _answer(sock)[0] == 413


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(server):
    chunk = b"x" * 4096
    sent = 0
    with _connect(server) as sock:
        sock.sendall(_head("/summarize", None))
        while sent < 100 * SINGLE_LIMIT:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer came while the client was still sending
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            time.sleep(0.002)
        status, error, closed = _answer(sock)
    assert status == 413 and error.code == ErrorCode.BODY_TOO_LARGE, error
    assert closed
    assert sent < 100 * SINGLE_LIMIT, "the service read the whole 2 MB body before refusing it"


def test_a_streamed_upload_over_the_limit_gets_413(server):
    def upload():  # httpx sends an iterator chunked, without a Content-Length
        for _ in range(BATCH_LIMIT // 4096 + 2):  # just past the limit: it all fits the socket buffers
            yield b"y" * 4096

    response = httpx.post(server.url + "/summarize_batch", content=upload(),
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert ErrorBody.model_validate_json(response.content).code == ErrorCode.BODY_TOO_LARGE


def test_a_slow_sender_gets_408_and_the_connection_closed_at_the_timeout(server):
    body = json.dumps({"dialogue": "A: hello there\nB: hi"}).encode()
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(_head("/summarize", len(body)))
        for byte in body[:20]:  # one byte every 0.2 s: it would take 8 s to send all
            sock.sendall(bytes([byte]))
            time.sleep(0.2)
            if select.select([sock], [], [], 0)[0]:
                break
        status, error, closed = _answer(sock)
        elapsed = time.monotonic() - started
    assert status == 408 and error.code == ErrorCode.BODY_TIMEOUT, error
    assert closed, "the slow client keeps its connection"
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 2.0


def test_a_body_shorter_than_its_content_length_gets_408(server):
    with _connect(server) as sock:
        sock.sendall(_head("/summarize", 500) + b'{"dialogue": "A: hi"}')  # says 500 bytes, sends 21
        status, error, closed = _answer(sock)
    assert status == 408 and error.code == ErrorCode.BODY_TIMEOUT and closed


def test_requests_within_the_limits_are_answered(server):
    response = httpx.post(server.url + "/summarize_batch", timeout=120,
                          content=json.dumps({"dialogues": ["A: caf\u00e9 at 5?\nB: ok " + "\u00e9" * 900] * 4}),
                          headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert len(response.json()["summaries"]) == 4
