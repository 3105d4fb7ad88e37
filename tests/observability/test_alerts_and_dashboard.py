"""The shipped alert rules and dashboard: valid for Prometheus/Grafana, and about metrics the service emits."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from observability import telemetry

OBS = Path(__file__).resolve().parents[2] / "observability"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: apt-get install "
                                                               "prometheus); alert rules not checked")
METRIC = re.compile(r"\b((?:summarizer|otel_sdk)_[a-z_]+)\b")
SDK_METRICS = {"otel_sdk_processor_span_processed_total", "otel_sdk_exporter_span_exported_total",
               "otel_sdk_exporter_metric_data_point_exported_total"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, groupings and strings left out)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return set(METRIC.findall(expr))


def emitted_names() -> set[str]:
    names = set(SDK_METRICS)
    for otel_name, prom in telemetry.PROMETHEUS_NAMES.items():
        names |= {prom + s for s in ("_bucket", "_sum", "_count")} if otel_name in telemetry.HISTOGRAMS else {prom}
    return names


def prometheus_name(name: str, unit: str, kind: str) -> str:
    """The OTLP -> Prometheus translation (Collector / Prometheus OTLP receiver defaults), for what we use."""
    base = name.replace(".", "_")
    suffix = {"s": "seconds"}.get(unit, "" if unit.startswith("{") or not unit else unit)
    if suffix and not base.endswith(suffix):
        base += "_" + suffix
    return base + "_total" if kind == "counter" else base


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((OBS / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((OBS / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_documented_prometheus_names_follow_the_translation():
    kinds = {telemetry.REQUESTS: ("{request}", "counter"), telemetry.REQUEST_DURATION: ("s", "histogram"),
             telemetry.REQUEST_TOKENS: ("{token}", "histogram"), telemetry.REQUESTS_IN_FLIGHT: ("{request}", "gauge"),
             telemetry.ERRORS: ("{error}", "counter"), telemetry.FALLBACKS: ("{fallback}", "counter"),
             telemetry.QUEUE_DURATION: ("s", "histogram"), telemetry.BATCH_SIZE: ("{dialogue}", "histogram"),
             telemetry.BATCH_DURATION: ("s", "histogram"), telemetry.MODEL_INFO: ("", "gauge")}
    assert set(kinds) == set(telemetry.PROMETHEUS_NAMES)
    for name, (unit, kind) in kinds.items():
        assert telemetry.PROMETHEUS_NAMES[name] == prometheus_name(name, unit, kind)


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_queries_use_only_metrics_the_service_emits(source):
    exprs = alert_exprs() if source == "alerts" else dashboard_exprs()
    used = set().union(*(metric_names(e) for e in exprs))
    assert used and used <= emitted_names(), sorted(used - emitted_names())


def test_alert_rules_cover_the_thresholds():
    rules = {r["alert"]: r for g in yaml.safe_load((OBS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    assert set(rules) == {"SummarizerLatencyP50High", "SummarizerLatencyP99High", "SummarizerErrorRateHigh",
                          "SummarizerThroughputLow", "SummarizerTokensPerRequestHigh", "SummarizerFallbackActive"}
    assert re.search(r"histogram_quantile\(0\.5,.*>\s*2\.5", rules["SummarizerLatencyP50High"]["expr"], re.S)
    assert re.search(r"histogram_quantile\(0\.99,.*>\s*4\b", rules["SummarizerLatencyP99High"]["expr"], re.S)
    assert re.search(r">\s*0\.02\b", rules["SummarizerErrorRateHigh"]["expr"])
    assert re.search(r"<\s*2\b", rules["SummarizerThroughputLow"]["expr"])
    assert re.search(r">\s*800\b", rules["SummarizerTokensPerRequestHigh"]["expr"])
    assert all(r["labels"]["severity"] in ("critical", "warning") for r in rules.values())


def test_dashboard_has_the_panels_operators_need():
    dashboard = json.loads((OBS / "grafana-dashboard.json").read_text())
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("latency", "throughput", "error", "batch size", "tokens", "fallback", "in flight", "queue"):
        assert needed in titles, needed
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource"}
    for p in dashboard["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]


@needs_promtool
def test_promtool_checks_and_unit_tests_the_alert_rules():
    subprocess.run([PROMTOOL, "check", "rules", str(OBS / "alerts.yml")], check=True, capture_output=True)
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts.test.yml"], cwd=OBS, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path):
    # Grafana's interval variables replaced by a duration, each query checked as a recording rule.
    rules = [{"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "5m")}
             for i, e in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
