"""bench.prometheus reads BentoML's batch-size histogram from Prometheus text written by prometheus_client."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bench.prometheus import batch_histogram, batch_histogram_delta

LABELS = ["runner_name", "worker_index", "method_name", "service_version", "service_name"]


def _registry():
    registry = CollectorRegistry()
    # the histogram as BentoML declares it (_bentoml_impl/server/app.py)
    batches = Histogram("adaptive_batch_size", "Service adaptive batch size", LABELS, namespace="bentoml_service",
                        buckets=[1, 2, 4, 8, 16, 32], registry=registry)
    other = Counter("bentoml_service_request", "requests", ["method_name"], registry=registry)
    other.labels(method_name="generate").inc(5)
    return registry, batches


def _observe(batches, runner: str, worker: int, method: str, sizes: list[int]) -> None:
    for size in sizes:
        batches.labels(runner_name=runner, worker_index=str(worker), method_name=method, service_version="",
                       service_name="summarizer").observe(size)


def test_batch_sizes_of_generate_summed_over_workers():
    registry, batches = _registry()
    _observe(batches, "summarizer_onnx", 0, "generate", [1, 4])
    _observe(batches, "summarizer_onnx", 1, "generate", [8])
    _observe(batches, "summarizer_onnx", 0, "other_method", [32])
    before = batch_histogram(generate_latest(registry).decode())
    assert set(before) == {"summarizer_onnx"}
    entry = before["summarizer_onnx"]
    assert (entry["count"], entry["sum"]) == (3.0, 13.0)
    assert entry["buckets"]["1.0"] == 1.0 and entry["buckets"]["4.0"] == 2.0 and entry["buckets"]["+Inf"] == 3.0

    _observe(batches, "summarizer_onnx", 0, "generate", [16, 16])
    _observe(batches, "summarizer_torch", 0, "generate", [2])
    delta = batch_histogram_delta(before, batch_histogram(generate_latest(registry).decode()))
    assert delta["summarizer_onnx"]["batches"] == 2.0
    assert delta["summarizer_onnx"]["mean_batch_size"] == pytest.approx(16.0)
    assert delta["summarizer_onnx"]["cumulative_buckets"]["8.0"] == 0.0
    assert delta["summarizer_onnx"]["cumulative_buckets"]["16.0"] == 2.0
    assert delta["summarizer_torch"]["batches"] == 1.0  # a service that only appeared later


def test_no_histogram_means_no_batches():
    assert batch_histogram("") == {}
    assert batch_histogram_delta({}, {}) == {}


def test_requests_in_flight_counts_the_public_services_summarize_routes_as_the_autoscaler_does():
    from prometheus_client import Gauge

    from bench.prometheus import requests_in_flight

    registry = CollectorRegistry()
    # the gauge as BentoML declares it (bentoml/_internal/server/http/instruments.py)
    gauge = Gauge("request_in_progress", "in progress", ["endpoint", "service_name", "service_version", "runner_name"],
                  namespace="bentoml_service", registry=registry)
    for endpoint, runner, value in [("/summarize", "dialogue_summarizer", 5),
                                    ("/summarize_batch", "dialogue_summarizer", 2),
                                    ("/readyz", "dialogue_summarizer", 1), ("/generate", "summarizer_onnx", 7)]:
        gauge.labels(endpoint=endpoint, service_name="", service_version="", runner_name=runner).set(value)
    assert requests_in_flight(generate_latest(registry).decode()) == 7.0
    assert requests_in_flight("") == 0.0
