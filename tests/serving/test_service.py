"""The real thing: `bentoml serve` processes driven over HTTP with the BentoML client."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import bentoml
import httpx
import pytest

from tests.server import ServedSummarizer

DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"


@pytest.fixture(scope="module")
def server(tiny_model, serve_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with ServedSummarizer(serve_env(tiny_model, SUMMARIZER_MAX_BATCH_SIZE="32", SUMMARIZER_MAX_LATENCY_MS="20000"),
                          log) as served:
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
    assert after["le1"] - before["le1"] < batches, "every batch had size 1"


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


def test_primary_failure_falls_back_and_overload_gets_503(tiny_model, serve_env, tmp_path):
    """PyTorch primary made to hang: requests are answered by ONNX after the bounded wait;
    past SUMMARIZER_MAX_PENDING the service answers 503 with Retry-After at once."""
    env = serve_env(tiny_model, SUMMARIZER_PRIMARY="torch", SUMMARIZER_FALLBACK="onnx",
                    SUMMARIZER_INJECT_FAULT="torch:hang", SUMMARIZER_PRIMARY_TIMEOUT_S="2",
                    SUMMARIZER_MAX_PENDING="3")
    with ServedSummarizer(env, tmp_path / "serve.log") as served:
        with bentoml.SyncHTTPClient(served.url) as client:
            result = client.summarize(dialogue=DIALOGUE)
        assert result["fallback"] is True and result["backend"] == "onnx-cpu" and result["summary"]

        async def flood():
            async with httpx.AsyncClient(timeout=60) as http:
                async def one():
                    t0 = time.perf_counter()
                    r = await http.post(served.url + "/summarize", json={"dialogue": DIALOGUE})
                    return r, time.perf_counter() - t0
                return await asyncio.gather(*(one() for _ in range(10)))

        responses = asyncio.run(flood())
        codes = sorted(r.status_code for r, _ in responses)
        assert set(codes) <= {200, 503}, codes
        assert codes.count(200) >= 1, "accepted requests must be answered, not dropped"
        rejected = [(r, dt) for r, dt in responses if r.status_code == 503]
        assert rejected, "10 concurrent requests over a limit of 3 must see 503s"
        for response, seconds in rejected:
            assert response.headers["retry-after"] == "1"
            assert "overloaded" in response.json()["error"]
            assert seconds < 1.5  # rejected at once, not after the 2 s primary timeout
        assert all(r.json()["fallback"] for r, _ in responses if r.status_code == 200)


def test_error_in_primary_falls_back_and_without_fallback_is_a_503(tiny_model, serve_env, tmp_path):
    env = serve_env(tiny_model, SUMMARIZER_PRIMARY="torch", SUMMARIZER_FALLBACK="onnx",
                    SUMMARIZER_INJECT_FAULT="torch:error")
    with ServedSummarizer(env, tmp_path / "a.log") as served:
        with bentoml.SyncHTTPClient(served.url) as client:
            batch = client.summarize_batch(dialogues=[DIALOGUE, "Tom: Lunch at 12?\nAnna: OK"])
        assert [s["backend"] for s in batch["summaries"]] == ["onnx-cpu", "onnx-cpu"]
        assert all(s["fallback"] for s in batch["summaries"])
        assert "falling back to onnx" in served.log()

    env = serve_env(tiny_model, SUMMARIZER_INJECT_FAULT="onnx:error")  # ONNX primary, no fallback on CPU
    with ServedSummarizer(env, tmp_path / "b.log") as served:
        response = httpx.post(served.url + "/summarize", json={"dialogue": DIALOGUE}, timeout=30)
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert "no fallback backend is configured" in response.json()["error"]


def test_batching_can_be_turned_off(tiny_model, serve_env, tmp_path):
    with ServedSummarizer(serve_env(tiny_model, SUMMARIZER_MAX_BATCH_SIZE="1"), tmp_path / "serve.log") as served:
        with bentoml.SyncHTTPClient(served.url) as client:
            assert client.summarize(dialogue=DIALOGUE)["summary"]
            assert len(client.summarize_batch(dialogues=[DIALOGUE, DIALOGUE])["summaries"]) == 2
        assert _batch_histogram(served.url)["count"] == 0  # BentoML's batcher never ran


def test_missing_model_names_the_import_command(serve_env, tmp_path):
    served = ServedSummarizer(serve_env("not-imported-model"), tmp_path / "serve.log")
    with pytest.raises(RuntimeError) as failure:
        served.start(timeout_s=120)
    served.stop()
    assert "python -m model_store import" in str(failure.value)


def _batch_histogram(url: str) -> dict[str, float]:
    """BentoML's adaptive batch size histogram of the ONNX backend, from the Prometheus /metrics page."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()

    def total(series: str, extra: str = "") -> float:
        pattern = (r"bentoml_service_adaptive_batch_size_" + series + r"\{" + extra +
                   r'[^}]*runner_name="summarizer_onnx"[^}]*\} ([0-9.e+]+)')
        return sum(float(v) for v in re.findall(pattern, text))

    return {"count": total("count"), "sum": total("sum"), "le1": total("bucket", r'le="1.0"')}
