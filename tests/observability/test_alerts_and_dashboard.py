"""The shipped alert rules and dashboard: valid for Prometheus/Grafana, and about the series, labels and
label values that a real service exported to a real collector (the runs of scenarios.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from observability import telemetry
from observability.collector import Received
from tests.observability.prometheus_names import Labels, base_name, exported_series, groupings, selectors

OBS = Path(__file__).resolve().parents[2] / "observability"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: apt-get install "
                                                               "prometheus); alert rules not checked")
# Label values the queries may name although no run exports them, and why.
NOT_EXPORTED_BY_THE_RUNS = {
    ("summarizer_requests_total", "summarizer_outcome", "error"):
        "a 5xx other than 503 from our own handler: the router turns every backend failure into 503, so only a "
        "bug in the service gives it",
    ("summarizer_input_dialogues_total", "summarizer_over_context", "true"):
        "a dialogue longer than the model's context: the runs send short ones (test_drift_live.py sends long ones)",
}
# Metrics these runs do not export, and where the same checks run on a service that does.
CHECKED_ELSEWHERE = {
    telemetry.CACHE_LOOKUPS: "the response cache is off in these runs (tests/conftest.py serve_env); "
                             "tests/cache/test_service_cache.py checks its metrics and dashboard queries",
    telemetry.CACHE_STORES: "the same",
}
LITERAL_ALTERNATIVES = re.compile(r"[\w/.-]+(\|[\w/.-]+)*")


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((OBS / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((OBS / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def runs(fallback_run, outage_run, timeout_run, export_stall_run) -> list[Received]:
    return [fallback_run.received, fallback_run.recovered, outage_run.received, timeout_run.received,
            export_stall_run.received]


def test_prometheus_names_in_telemetry_are_the_translation_of_what_was_exported(runs):
    """telemetry.PROMETHEUS_NAMES (what alerts.yml's header documents) against the units and kinds received."""
    ours = {p.name: p for received in runs for p in received.points if p.name.startswith("summarizer.")}
    assert set(ours) == set(telemetry.PROMETHEUS_NAMES) - set(CHECKED_ELSEWHERE)
    for name, point in ours.items():
        assert telemetry.PROMETHEUS_NAMES[name] == base_name(point), (name, point.unit, point.kind)
    assert {n for n, p in ours.items() if p.kind == "Histogram"} == set(telemetry.HISTOGRAMS)


def check_label(metric: str, labels: Labels, label: str, op: str, value: str) -> None:
    assert label in labels, f"{metric} has no label {label} (exported: {sorted(labels)})"
    if op == "=":
        wanted = [value]
    elif op == "=~" and LITERAL_ALTERNATIVES.fullmatch(value):
        wanted = value.split("|")
    elif op == "=~":
        assert any(re.fullmatch(value, v) for v in labels[label]), (metric, label, value, labels[label])
        return
    else:  # != and !~ select by exclusion: the label must exist, which it does
        return
    for one in wanted:
        assert one in labels[label] or (metric, label, one) in NOT_EXPORTED_BY_THE_RUNS, \
            f"{metric}{{{label}{op}\"{value}\"}}: no run exported {label}=\"{one}\" (seen: {sorted(labels[label])})"


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_queries_select_series_labels_and_values_the_service_exports(source, runs):
    exported = exported_series(*runs)
    exprs = alert_exprs() if source == "alerts" else dashboard_exprs()
    elsewhere = {telemetry.PROMETHEUS_NAMES[name] for name in CHECKED_ELSEWHERE}
    assert exprs
    for expr in exprs:
        for selector in selectors(expr):
            if selector.metric in elsewhere:
                continue
            assert selector.metric in exported, f"{selector.metric} is not exported (query: {expr})"
            for m in selector.matchers:
                check_label(selector.metric, exported[selector.metric], m.label, m.op, m.value)
        for grouping in groupings(expr):
            if elsewhere & set(grouping.metrics):
                continue
            available = set().union(*(exported[m] for m in grouping.metrics))
            assert set(grouping.labels) <= available, (expr, sorted(set(grouping.labels) - available))


def test_alert_rules_cover_the_thresholds():
    rules = {r["alert"]: r for g in yaml.safe_load((OBS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    assert set(rules) == {"SummarizerLatencyP50High", "SummarizerLatencyP99High", "SummarizerErrorRateHigh",
                          "SummarizerThroughputLow", "SummarizerTokensPerRequestHigh", "SummarizerFallbackActive",
                          "SummarizerInputDrift"}
    assert re.search(r"histogram_quantile\(0\.5,.*>\s*2\.5", rules["SummarizerLatencyP50High"]["expr"], re.S)
    assert re.search(r"histogram_quantile\(0\.99,.*>\s*4\b", rules["SummarizerLatencyP99High"]["expr"], re.S)
    assert re.search(r">\s*0\.02\b", rules["SummarizerErrorRateHigh"]["expr"])
    assert re.search(r"<\s*2\b", rules["SummarizerThroughputLow"]["expr"])
    assert re.search(r">\s*800\b", rules["SummarizerTokensPerRequestHigh"]["expr"])
    assert re.search(r"summarizer_input_drift_psi.*>\s*0\.2\b", rules["SummarizerInputDrift"]["expr"], re.S)
    assert rules["SummarizerInputDrift"]["for"] == "15m"
    assert all(r["labels"]["severity"] in ("critical", "warning") for r in rules.values())


def test_dashboard_has_the_panels_operators_need():
    dashboard = json.loads((OBS / "grafana-dashboard.json").read_text())
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("latency", "throughput", "error", "batch size", "tokens", "fallback", "in flight", "queue",
                   "drift", "language"):
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
