"""A request whose connection is dropped before an answer (the service's worker died) is sent once more by
the client itself; a timeout is not, and neither is a second drop. Against a raw socket server that drops
the first ``drops`` connections after reading the request, then answers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest

from client import AsyncSummarizerClient, ServiceUnreachable, SummarizerClient

DIALOGUE = "Tom: Lunch at 12?\nAnna: OK"
SUMMARY = {"summary": "Tom and Anna meet at 12.", "model": "tiny:1", "backend": "onnx-cpu", "input_tokens": 9,
           "output_tokens": 7, "truncated": False}


class DroppingServer:
    """Reads each request; closes the first ``drops`` connections without a word, answers the others 200."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), b"0"))
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                if self.requests <= self.drops:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    continue  # closed with a reset, as a SIGKILLed worker's connection is
                answer = json.dumps(SUMMARY).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                             b"Content-Length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(request):
    served = DroppingServer(request.param)
    yield served
    served.close()


@pytest.mark.parametrize("server", [1], indirect=True)
def test_a_dropped_request_is_sent_once_more(server):
    with SummarizerClient(server.url, timeout_s=5) as client:
        assert client.summarize(DIALOGUE).summary == SUMMARY["summary"]
    assert server.requests == 2


@pytest.mark.parametrize("server", [1], indirect=True)
def test_the_async_client_sends_a_dropped_request_once_more(server):
    async def call():
        async with AsyncSummarizerClient(server.url, timeout_s=5) as client:
            return await client.summarize(DIALOGUE)
    assert asyncio.run(call()).summary == SUMMARY["summary"] and server.requests == 2


@pytest.mark.parametrize("server", [2], indirect=True)
def test_a_request_dropped_twice_fails_naming_the_cause(server):
    with SummarizerClient(server.url, timeout_s=5) as client, pytest.raises(ServiceUnreachable) as failed:
        client.summarize(DIALOGUE)
    assert server.requests == 2, "one retry, not more"
    assert "cannot reach the summarizer" in str(failed.value)


@pytest.mark.parametrize("server", [1], indirect=True)
def test_retries_zero_turns_it_off(server):
    with SummarizerClient(server.url, timeout_s=5, retries=0) as client, pytest.raises(ServiceUnreachable):
        client.summarize(DIALOGUE)
    assert server.requests == 1


def test_a_timed_out_request_is_not_sent_again():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (kernel backlog), never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with SummarizerClient(url, timeout_s=0.3) as client, pytest.raises(ServiceUnreachable, match="read timeout"):
            client.summarize(DIALOGUE)
        silent.settimeout(0.1)
        accepted = [silent.accept()[0]]  # the one attempt
        with pytest.raises(socket.timeout):
            accepted.append(silent.accept()[0])
        for conn in accepted:
            conn.close()


def test_negative_retries_are_refused():
    with pytest.raises(ValueError, match="retries must be 0 or more"):
        SummarizerClient(retries=-1)
