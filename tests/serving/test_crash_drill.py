"""A worker process SIGKILLed under load fails no request (bench/drill.py, short): the ONNX worker of the CPU
default (no fallback: the router retries the crashed calls once the respawned worker answers), then one of
the two API workers (the other goes on serving; the Python client sends its dropped requests again)."""

from __future__ import annotations

import pytest

from bench.drill import API, ONNX, drill
from harness import bentoml_serve, service_workers

DIALOGUES = [
    "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)",
    "Tom: Lunch at 12?\nAnna: OK, the usual place?\nTom: Yes, see you there.",
    "#Person1#: Where is the station?\n#Person2#: Two blocks down, then left.\n#Person1#: Thanks a lot!",
]
CLIENTS = 4
SERVED_AGAIN_S = 2.0  # the bound for new requests after an API worker is killed


@pytest.fixture(scope="module")
def served(tiny_model, serve_env, tmp_path_factory):
    env = serve_env(tiny_model, SUMMARIZER_API_WORKERS="2")
    with bentoml_serve(tmp_path_factory.mktemp("drill") / "serve.log", env) as server:
        yield server


def test_the_service_runs_two_api_workers_and_one_onnx_worker(served):
    workers = service_workers(served.pid)
    assert [(w.service, w.worker_id) for w in workers if w.service in (API, ONNX)] == [
        (API, 1), (API, 2), (ONNX, 1)]
    assert next(w for w in workers if w.service == ONNX).socket_path, "a backend serves on a Unix socket"
    # A second API worker is cheap only without PyTorch: it routes, it does not generate.
    for worker in (w for w in workers if w.service == API):
        assert not [m.path for m in worker.process.memory_maps() if "libtorch" in m.path], \
            f"API worker {worker.worker_id} loaded PyTorch"
    # uvicorn serves on httptools' HTTP parser and uvloop's event loop when they are installed (requirements)
    for worker in (w for w in workers if w.service in (API, ONNX)):
        libraries = {m.path for m in worker.process.memory_maps()}
        assert any("/uvloop/" in p for p in libraries) and any("/httptools/" in p for p in libraries), \
            f"{worker.service} worker {worker.worker_id} runs without uvloop or httptools"


def test_killing_the_onnx_worker_fails_no_request(served):
    result = drill(served.url, served.pid, ONNX, DIALOGUES, clients=CLIENTS, seconds=10.0, kill_at_s=3.0)
    assert result["in_flight_at_kill"] > 0, result
    assert "onnx backend crashed" in served.log(), "the kill caught no backend call: the drill proved nothing"
    assert (result["failures"], result["errors"]) == (0, {}), result
    # The crashed calls are retried as soon as the respawned worker answers, not after a timeout.
    assert result["first_answer_after_kill_s"] <= result["replacement_answers_s"] + 5.0, result


def test_killing_an_api_worker_fails_no_request_and_new_ones_are_served_within_2_s(served):
    result = drill(served.url, served.pid, API, DIALOGUES, clients=CLIENTS, seconds=8.0, kill_at_s=2.0)
    assert result["in_flight_at_kill"] > 0, result
    assert (result["failures"], result["errors"]) == (0, {}), result
    assert result["served_again_s"] <= SERVED_AGAIN_S, result  # a new connection is answered by the other worker
    # A summary requested after the kill is answered within the bound, plus its own time as measured before it.
    assert result["first_success_after_kill_s"] <= SERVED_AGAIN_S + result["median_before_kill_s"], result
    assert result["replacement_started_s"] is not None, "BentoML respawns the killed API worker"
