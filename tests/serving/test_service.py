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
from serving.errors import ErrorBody, ErrorCode

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
    assert all(s["output_tokens"] <= 3 for s in summaries[:2])
    # a dialogue longer than the context is read in windows (README "Long dialogues"), nothing truncated;
    # max_new_tokens bounds each window's summary
    assert [s["truncated"] for s in summaries] == [False, False, False]
    long = summaries[2]["long_dialogue"]
    assert long["windows"] > 1 and summaries[2]["output_tokens"] <= 3 * long["windows"]
    assert summaries[2]["input_tokens"] > 2000


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


# (route, body, field, words of the message); the answer is an ErrorBody (serving/errors.py)
BAD_INPUTS = [
    ("/summarize", {"dialogue": "   \n "}, "dialogue", "empty or whitespace"),
    ("/summarize", {"dialogue": ""}, "dialogue", "empty or whitespace"),
    ("/summarize", {"dialogue": 42}, "dialogue", "valid string"),
    ("/summarize", {"dialogue": ["a", "b"]}, "dialogue", "valid string"),
    ("/summarize", {}, "dialogue", "dialogue: is required"),
    ("/summarize", {"dialogue": "x" * 20_001}, "dialogue", "the limit is 20000"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"num_beams": 0}}, "generation.num_beams",
     "greater than or equal to 1"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"num_beams": 64}}, "generation.num_beams",
     "less than or equal to 8"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"num_beams": "4"}}, "generation.num_beams", "valid integer"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"max_new_tokens": 10_000}}, "generation.max_new_tokens",
     "less than or equal to 512"),
    ("/summarize", {"dialogue": "A: hi", "generation": {"length_penalty": -1}}, "generation.length_penalty",
     "greater than or equal to 0"),
    ("/summarize_batch", {"dialogues": []}, "dialogues", "empty list"),
    ("/summarize_batch", {"dialogues": ["A: hi"] * 33}, "dialogues", "the limit is 32"),
    ("/summarize_batch", {"dialogues": ["A: hi", " "]}, "dialogues", "dialogues[1]"),
    ("/summarize_batch", {"dialogues": ["A: hi", 7]}, "dialogues[1]", "valid string"),
    ("/summarize_batch", {"dialogues": "A: hi"}, "dialogues", "valid array"),
]


@pytest.mark.parametrize("route,body,field,message", BAD_INPUTS, ids=[f"{r}-{m}" for r, _, _, m in BAD_INPUTS])
def test_bad_input_gets_a_400_that_names_the_field_and_says_what_is_wrong(server, route, body, field, message):
    response = httpx.post(server.url + route, json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = ErrorBody.model_validate_json(response.content)
    assert (error.code, error.field) == (ErrorCode.INVALID_REQUEST, field), error
    assert message in error.message, error
    for internal in ("IODescriptor", "pydantic", "validation error for", "SummarizeRequest"):
        assert internal not in response.text


@pytest.mark.parametrize("body,field,allowed", [
    ({"dialogue": "A: hi", "temperature": 0.3}, "temperature", ["dialogue", "generation"]),
    ({"dialogue": "A: hi", "generation": {"beams": 4}}, "generation.beams",
     ["num_beams", "max_new_tokens", "min_new_tokens", "length_penalty", "no_repeat_ngram_size"]),
    ({"dialogues": ["A: hi"]}, "dialogues", ["dialogue", "generation"]),  # the other route's field
])
def test_an_unknown_field_gets_the_fields_allowed_there(server, body, field, allowed):
    response = httpx.post(server.url + "/summarize", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = ErrorBody.model_validate_json(response.content)
    assert (error.code, error.field, error.allowed) == (ErrorCode.UNKNOWN_FIELD, field, allowed), error
    assert ", ".join(allowed) in error.message


def test_an_error_message_never_echoes_the_dialogue(server):
    secret = "Zanzibar-canary-7731"
    for body in ({"dialogue": secret * 2000}, {"dialogues": [secret, 42]}, {"dialogue": [secret]},
                 {"dialogue": secret, "generation": {"num_beams": secret}}):
        route = "/summarize_batch" if "dialogues" in body else "/summarize"
        response = httpx.post(server.url + route, json=body, timeout=30)
        assert response.status_code == 400 and secret not in response.text, response.text


@pytest.mark.parametrize("payload,code,message", [
    (b'{"dialogue": "A: hi"', ErrorCode.INVALID_JSON, "not valid JSON"),
    (b'{"dialogue": "\xff\xfe A: hi"}', ErrorCode.INVALID_JSON, "not valid JSON"),
    (b"", ErrorCode.INVALID_REQUEST, "dialogue: is required"),
    (b"[1, 2]", ErrorCode.INVALID_REQUEST, "must be a JSON object"),
])
def test_malformed_bodies_get_a_400(server, payload, code, message):
    response = httpx.post(server.url + "/summarize", content=payload,
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400, response.text
    error = ErrorBody.model_validate_json(response.content)
    assert error.code == code and message in error.message, error


@pytest.mark.parametrize("method,path,status,code", [
    ("GET", "/summarize", 405, ErrorCode.METHOD_NOT_ALLOWED),
    ("POST", "/model", 405, ErrorCode.METHOD_NOT_ALLOWED),
    ("GET", "/no-such-route", 404, ErrorCode.NOT_FOUND),
])
def test_bentoml_and_starlette_errors_have_the_same_shape(server, method, path, status, code):
    response = httpx.request(method, server.url + path, timeout=30)
    assert response.status_code == status and response.headers["content-type"] == "application/json"
    assert ErrorBody.model_validate_json(response.content).code == code
    if status == 405:
        assert response.headers["allow"]


def test_a_body_that_is_not_json_gets_415(server):
    for media_type in ("text/plain", "application/vnd.bentoml+pickle"):
        response = httpx.post(server.url + "/summarize", content=b'{"dialogue": "A: hi"}',
                              headers={"content-type": media_type}, timeout=30)
        assert response.status_code == 415, response.text
        assert ErrorBody.model_validate_json(response.content).code == ErrorCode.UNSUPPORTED_MEDIA_TYPE


def test_min_new_tokens_above_max_new_tokens_is_accepted(server):
    response = httpx.post(server.url + "/summarize", json={
        "dialogue": DIALOGUE, "generation": {"min_new_tokens": 50, "max_new_tokens": 3}}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["output_tokens"] <= 3


def test_health_endpoints_and_model_info(server, tiny_model):
    assert httpx.get(server.url + "/livez").status_code == 200
    assert httpx.get(server.url + "/readyz").status_code == 200
    info = httpx.get(server.url + "/model").json()
    assert info["model"] == tiny_model and info["primary"] == "onnx" and info["fallback"] is None
    by_backend = {b["backend"]: b for b in info["backends"]}
    assert by_backend["onnx"]["loaded"] is True
    assert by_backend["torch"]["loaded"] is False  # no GPU: PyTorch stays out of the way


def test_the_published_openapi_tells_the_truth(server):
    spec = httpx.get(server.url + "/docs.json").json()
    schemas = spec["components"]["schemas"]
    batch = schemas["SummarizeBatchRequest"]
    dialogues = batch["properties"]["dialogues"]
    assert (dialogues["minItems"], dialogues["maxItems"]) == (1, 32) and batch["additionalProperties"] is False
    assert (dialogues["items"]["minLength"], dialogues["items"]["maxLength"]) == (1, 20_000)
    assert dialogues["items"]["pattern"].startswith("[^")
    generation = batch["properties"]["generation"]
    assert generation["nullable"] is True  # BentoML's document lost the Optional
    options = schemas["GenerationOptions"]
    assert options["additionalProperties"] is False
    assert (options["properties"]["num_beams"]["minimum"], options["properties"]["num_beams"]["maximum"]) == (1, 8)
    assert set(spec["paths"]["/model"]) == {"get"}
    for route in ("/summarize", "/summarize_batch"):
        responses = spec["paths"][route]["post"]["responses"]
        assert {"400", "408", "413", "415", "500", "503", "504"} <= set(responses)
    for route, item in spec["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert answer["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"}, (method, route, status)


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


def test_get_root_leads_to_the_web_page_and_swagger_moved_to_docs(server):
    root = httpx.get(server.url + "/", timeout=30)
    assert (root.status_code, root.headers["location"]) == (307, "/ui/")
    page = httpx.get(server.url + "/", timeout=30, follow_redirects=True)
    assert page.url.path == "/ui/" and "<title>Dialogue summarizer</title>" in page.text
    swagger = httpx.get(server.url + "/docs", timeout=30)
    assert swagger.status_code == 200 and 'id="swagger-ui"' in swagger.text
    assert httpx.get(server.url + "/static_content/swagger-initializer.js", timeout=30).status_code == 200
    # BentoML's routes and ours are untouched by the page's mount.
    assert httpx.get(server.url + "/model", timeout=30).json()["context_tokens"] == 1024
    assert httpx.get(server.url + "/docs.json", timeout=30).json()["paths"]["/summarize"]

