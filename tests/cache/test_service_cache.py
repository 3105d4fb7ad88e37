"""The response cache of a real ``bentoml serve`` (tiny BART, the cache in the API worker's memory), its
metrics as a real collector (rotel) received them, and the dashboard's cache queries against them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from harness import bentoml_serve
from observability import telemetry
from observability.collector import Collector, Received
from observability.names import INPUT_DIALOGUES
from tests.observability.otel_checks import otel_env
from tests.observability.prometheus_names import base_name, exported_series, groupings, selectors

DASHBOARD = Path(__file__).resolve().parents[2] / "observability" / "grafana-dashboard.json"
RESULT, STORE = telemetry.CACHE_RESULT, telemetry.CACHE_STORE
DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"
OTHER = "Tom: Lunch at noon at the usual place?\nAnna: OK, see you there."
GENERATION = {"max_new_tokens": 8}


class Served:
    """The service, its collector, and every summary it answered in this module (the metrics count them all)."""

    def __init__(self, client: httpx.Client, collector: Collector) -> None:
        self.client, self.collector = client, collector
        self.summaries: list[dict] = []

    def post(self, path: str, body: dict) -> dict:
        resp = self.client.post(path, json=body)
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        self.summaries += answer.get("summaries", [answer])
        return answer


@pytest.fixture(scope="module")
def served(tiny_model, serve_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cache_service")
    with Collector(workdir / "collector.log") as collector:
        env = serve_env(tiny_model, SUMMARIZER_CACHE="on", **otel_env(collector, "grpc", "http/protobuf"))
        with bentoml_serve(workdir / "serve.log", env) as server:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                yield Served(client, collector)


def summarize(served: Served, dialogue: str, generation: dict = GENERATION) -> dict:
    return served.post("/summarize", {"dialogue": dialogue, "generation": generation})


def test_the_same_request_twice_is_answered_from_the_cache_the_second_time(served):
    first, second = summarize(served, DIALOGUE), summarize(served, DIALOGUE)
    assert first["cached"] is False and second["cached"] is True
    assert second["request_id"] and second["request_id"] != first["request_id"]
    produced = ("summary", "model", "backend", "input_tokens", "output_tokens", "truncated", "fallback")
    assert {k: second[k] for k in produced} == {k: first[k] for k in produced}
    assert second["warnings"] == first["warnings"]


def test_other_generation_settings_are_a_miss(served):
    summarize(served, OTHER)
    other = summarize(served, OTHER, {**GENERATION, "num_beams": 1})
    assert other["cached"] is False
    assert summarize(served, OTHER, {**GENERATION, "num_beams": 1})["cached"] is True


def test_a_batch_answers_its_known_dialogues_from_the_cache_and_generates_the_rest(served):
    summarize(served, DIALOGUE)
    new = "Lena: Did the parcel arrive?\nMax: Yes, this morning!"
    answer = served.post("/summarize_batch", {"dialogues": [DIALOGUE, new], "generation": GENERATION})
    assert [s["cached"] for s in answer["summaries"]] == [True, False]
    assert summarize(served, new)["cached"] is True  # generated in a batch, stored like any other


def test_hits_misses_and_stores_are_exported_and_the_dashboard_queries_select_them(served):
    dialogue = "Sam: Are we still on for 3?\nKim: Yes, room 4B."
    for _ in range(3):
        summarize(served, dialogue)
    # every summary this module's tests were answered, counted as the service counted them
    wanted = {"hit": sum(s["cached"] for s in served.summaries), "miss": sum(not s["cached"] for s in served.summaries)}
    assert wanted["hit"] >= 2 and wanted["miss"] >= 1
    received = served.collector.wait_for(
        lambda r: all(lookups(r, result) >= n for result, n in wanted.items()), timeout_s=30)
    assert {result: lookups(received, result) for result in wanted} == wanted
    assert lookups(received, "error") == 0
    assert received.total(telemetry.CACHE_STORES, **{RESULT: "stored", STORE: "memory"}) == lookups(received, "miss")
    # Hits are not inspected again (their statistics come back from the cache) but count for drift all the same
    received = served.collector.wait_for(lambda r: r.total(INPUT_DIALOGUES) >= len(served.summaries), timeout_s=30)
    assert received.total(INPUT_DIALOGUES) == len(served.summaries)
    # Requests answered from the cache alone are counted with backend "cache"
    assert received.total(telemetry.REQUESTS, **{telemetry.BACKEND: telemetry.CACHED_BACKEND}) >= 2
    spans = [s for s in received.spans if s.name.startswith(telemetry.OPERATION)]
    assert any(s.attributes.get("summarizer.cache.hit") == 1 for s in spans)
    assert any(s.attributes.get("summarizer.cache.miss") == 1 for s in spans)
    check_names_and_dashboard(received)


def lookups(received: Received, result: str) -> float:
    return received.total(telemetry.CACHE_LOOKUPS, **{RESULT: result, STORE: "memory"})


def check_names_and_dashboard(received: Received) -> None:
    """What tests/observability checks for the other metrics (its runs have the cache off): the Prometheus
    names of telemetry.PROMETHEUS_NAMES are the translation of what was exported, and the dashboard's cache
    queries select series, labels and label values that were exported."""
    cache_metrics = {telemetry.CACHE_LOOKUPS, telemetry.CACHE_STORES}
    points = {p.name: p for p in received.points if p.name in cache_metrics}
    assert set(points) == cache_metrics
    for name, point in points.items():
        assert telemetry.PROMETHEUS_NAMES[name] == base_name(point)
    exported = exported_series(received)
    ours = {telemetry.PROMETHEUS_NAMES[name] for name in cache_metrics}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    checked = 0
    for expr in exprs:
        found = [s for s in selectors(expr) if s.metric in ours]
        for selector in found:
            assert selector.metric in exported, expr
            for m in selector.matchers:
                assert m.op == "=" and m.value in exported[selector.metric][m.label], (expr, m)
        for grouping in groupings(expr):
            if ours & set(grouping.metrics):
                available = set().union(*(exported[m] for m in grouping.metrics))
                assert set(grouping.labels) <= available, (expr, grouping.labels)
        checked += bool(found)
    assert checked >= 2, "the dashboard has no response cache panel"
