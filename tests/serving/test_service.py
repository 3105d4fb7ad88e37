"""The real thing: `bentoml serve` of the tiny BART driven over HTTP: answers, batching, bad input, health.

Failures and overload: test_service_failures.py; generation settings: test_service_generation.py; start-up
problems: test_service_startup.py."""

from __future__ import annotations

import asyncio

import bentoml
import httpx
import pytest

from bench.prometheus import batch_histogram
from harness import bentoml_serve

DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"


@pytest.fixture(scope="module")
def server(tiny_model, serve_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with bentoml_serve(log, serve_env(tiny_model, SUMMARIZER_MAX_BATCH_SIZE="32",
                                      SUMMARIZER_MAX_LATENCY_MS="20000")) as served:
        yield served


def test_summary_comes_back_with_its_accounting(server, tiny_model):
    with bentoml.SyncHTTPClient(server.url) as client:
        result = client.summarize(dialogue=DIALOGUE)
    assert result["summary"].strip()
    assert result["model"] == tiny_model
    assert result["backend"] == "onnx-cpu"  # no GPU here: ONNX Runtime serves
    assert result["fallback"] is False
    assert result["truncated"] is False
    assert result["input_tokens"] > 10 and result["output_tokens"] > 0
    assert result["duration_ms"] > 0


def test_list_endpoint_and_generation_settings(server):
    with bentoml.SyncHTTPClient(server.url) as client:
        batch = client.summarize_batch(dialogues=[DIALOGUE, "Tom: Lunch at 12?\nAnna: OK", "Ann: " + "word " * 2000],
                                       generation={"num_beams": 1, "max_new_tokens": 3, "min_new_tokens": 0})
    summaries = batch["summaries"]
    assert len(summaries) == 3
    assert all(s["output_tokens"] <= 3 for s in summaries)
    assert [s["truncated"] for s in summaries] == [False, False, True]
    assert summaries[2]["input_tokens"] == 1024


def test_async_client_concurrent_requests_are_batched(server):
    before = _batch_histogram(server.url)

    async def burst():
        async with bentoml.AsyncHTTPClient(server.url) as client:
            return await asyncio.gather(*(client.summarize(dialogue=f"A: note {i}\nB: got it, {i}.") for i in range(32)))

    results = asyncio.run(burst())
    assert len(results) == 32 and all(r["summary"] for r in results)
    after = _batch_histogram(server.url)
    batches = after["count"] - before["count"]
    items = after["sum"] - before["sum"]
    assert items == 32
    assert batches < 32, f"32 concurrent requests ran in {batches} batches: no batching happened"
    assert after["buckets"]["1.0"] - before["buckets"].get("1.0", 0.0) < batches, "every batch had size 1"


def test_sustained_concurrency_loses_no_request(server):
    """Past 100 backend calls BentoML's client would recycle its HTTP session under in-flight requests."""
    async def load():
        async with httpx.AsyncClient(timeout=120) as http:
            gate = asyncio.Semaphore(32)

            async def one(i):
                async with gate:
                    return await http.post(server.url + "/summarize", json={"dialogue": f"A: ping {i}\nB: pong"})
            return await asyncio.gather(*(one(i) for i in range(240)))

    codes = [r.status_code for r in asyncio.run(load())]
    assert codes.count(200) == 240, {c: codes.count(c) for c in set(codes)}


BAD_INPUTS = [
    ("/summarize", {"dialogue": "   \n "}, "empty or whitespace"),
    ("/summarize", {"dialogue": ""}, "empty or whitespace"),
    ("/summarize", {"dialogue": 42}, "valid string"),
    ("/summarize", {"dialogue": ["a", "b"]}, "valid string"),
    ("/summarize", {}, "Field required"),
    ("/summarize", {"dialogue": "x" * 20_001}, "the limit is 20000"),
    ("/summarize", {"dialogue": "A: hi", "temperature": 0.3}, "Extra inputs are not permitted"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"beams": 4}}, "Extra inputs are not permitted"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"num_beams": 0}}, "greater than or equal to 1"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"num_beams": 64}}, "less than or equal to 8"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"num_beams": "4"}}, "valid integer"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"max_new_tokens": 10_000}}, "less than or equal to 512"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"length_penalty": -1}}, "greater than or equal to 0"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"min_new_tokens": 50, "max_new_tokens": 10}},
     "must not exceed max_new_tokens"),
    ("/summarize_batch", {"dialogues": []}, "empty list"),
    ("/summarize_batch", {"dialogues": ["A: hi"] * 33}, "the limit is 32"),
    ("/summarize_batch", {"dialogues": ["A: hi", " "]}, "dialogues[1]"),
    ("/summarize_batch", {"dialogues": "A: hi"}, "valid array"),
]


@pytest.mark.parametrize("route,body,message", BAD_INPUTS, ids=[f"{r}-{m}" for r, _, m in BAD_INPUTS])
def test_bad_input_gets_a_4xx_that_says_what_is_wrong(server, route, body, message):
    response = httpx.post(server.url + route, json=body, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert message in response.text


@pytest.mark.parametrize("payload,message", [
    (b'{"dialogue": "A: hi"', "Invalid JSON"),
    (b'{"dialogue": "\xff\xfe A: hi"}', "Invalid JSON"),
    (b"", "Field required"),
])
def test_malformed_bodies_get_a_400(server, payload, message):
    response = httpx.post(server.url + "/summarize", content=payload,
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400, response.text
    assert message in response.text


def test_health_endpoints_and_model_info(server, tiny_model):
    assert httpx.get(server.url + "/livez").status_code == 200
    assert httpx.get(server.url + "/readyz").status_code == 200
    info = httpx.post(server.url + "/model", json={}).json()
    assert info["model"] == tiny_model and info["primary"] == "onnx" and info["fallback"] is None
    by_backend = {b["backend"]: b for b in info["backends"]}
    assert by_backend["onnx"]["loaded"] is True
    assert by_backend["torch"]["loaded"] is False  # no GPU: PyTorch stays out of the way


def test_batching_can_be_turned_off(tiny_model, serve_env, tmp_path):
    with bentoml_serve(tmp_path / "serve.log", serve_env(tiny_model, SUMMARIZER_MAX_BATCH_SIZE="1")) as served:
        with bentoml.SyncHTTPClient(served.url) as client:
            assert client.summarize(dialogue=DIALOGUE)["summary"]
            assert len(client.summarize_batch(dialogues=[DIALOGUE, DIALOGUE])["summaries"]) == 2
        assert _batch_histogram(served.url)["count"] == 0  # BentoML's batcher never ran


def _batch_histogram(url: str) -> dict:
    """BentoML's adaptive batch size histogram of the ONNX backend's generate(), from /metrics."""
    return batch_histogram(httpx.get(url + "/metrics", timeout=10).text).get("summarizer_onnx", {
        "buckets": {}, "sum": 0.0, "count": 0.0})
