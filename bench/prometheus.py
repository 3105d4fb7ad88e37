"""BentoML's adaptive batch sizes, read from the service's Prometheus page (``/metrics``).

BentoML records every batch a batchable method ran in the histogram ``bentoml_service_adaptive_batch_size``
(labels ``runner_name``: the service, ``method_name``, ``worker_index``). The benchmark and the load test
read it before and after a measurement; the difference says how many batches formed and how large.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

BATCH_SIZE_FAMILY = "bentoml_service_adaptive_batch_size"
BATCHED_METHOD = "generate"  # the backends' batchable API (serving/backends.py)
# What the autoscaler counts (deploy/base/scaledobject.yaml): the public service's summarize requests in flight
IN_FLIGHT_FAMILY = "bentoml_service_request_in_progress"
PUBLIC_SERVICE = "dialogue_summarizer"
SUMMARIZE_ROUTES = ("/summarize", "/summarize_batch")


def requests_in_flight(metrics_text: str, service: str = PUBLIC_SERVICE,
                       endpoints: tuple[str, ...] = SUMMARIZE_ROUTES) -> float:
    """Requests in flight on ``service``'s ``endpoints`` now, as the ScaledObject's query sums them."""
    return sum(sample.value for family in text_string_to_metric_families(metrics_text)
               if family.name == IN_FLIGHT_FAMILY for sample in family.samples
               if sample.labels.get("runner_name") == service and sample.labels.get("endpoint") in endpoints)


def _empty() -> dict:
    return {"buckets": {}, "sum": 0.0, "count": 0.0}


def batch_histogram(metrics_text: str, method: str = BATCHED_METHOD) -> dict:
    """{service: {"buckets": {le: cumulative count}, "sum": sizes summed, "count": batches}} of ``method``,
    summed over the service's workers."""
    out: dict = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != BATCH_SIZE_FAMILY:
            continue
        for sample in family.samples:
            if sample.labels.get("method_name") != method:
                continue
            entry = out.setdefault(sample.labels.get("runner_name", "?"), _empty())
            if sample.name.endswith("_bucket"):
                le = sample.labels["le"]
                entry["buckets"][le] = entry["buckets"].get(le, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] += sample.value
            elif sample.name.endswith("_count"):
                entry["count"] += sample.value
    return out


def batch_histogram_delta(before: dict, after: dict) -> dict:
    """The batches formed between two ``batch_histogram`` readings, per service that formed any:
    {"batches", "mean_batch_size", "cumulative_buckets"}."""
    out = {}
    for service, a in after.items():
        b = before.get(service, _empty())
        count = a["count"] - b["count"]
        if count <= 0:
            continue
        buckets = {le: a["buckets"][le] - b["buckets"].get(le, 0.0) for le in a["buckets"]}
        out[service] = {"batches": count, "mean_batch_size": (a["sum"] - b["sum"]) / count,
                        "cumulative_buckets": buckets}
    return out
