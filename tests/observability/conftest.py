"""Fixtures of the telemetry tests: a collector per test, and the runs of a real service (scenarios.py),
each done once per session and shared by the trace, metric and alert-rule tests."""

from __future__ import annotations

import pytest

from observability.collector import Collector
from tests.observability import scenarios
from tests.observability.services import SETTINGS, Service, start_services


@pytest.fixture
def collector(tmp_path):
    with Collector(tmp_path / "collector.log") as running:
        yield running


@pytest.fixture(scope="session")
def services(request, tiny_model, serve_env, tmp_path_factory) -> dict[str, Service]:
    """The services of the runs that the selected tests use, started together."""
    wanted = [run for run in SETTINGS if any(run in item.fixturenames for item in request.session.items)]
    started = start_services(wanted, tiny_model, serve_env, tmp_path_factory.mktemp("runs"))
    yield started
    for service in started.values():  # each run stops its own; this is for a run that never ran
        service.stop()


@pytest.fixture(scope="session")
def fallback_run(services) -> scenarios.FallbackRun:
    return scenarios.fallback_run(services["fallback_run"])


@pytest.fixture(scope="session")
def outage_run(services) -> scenarios.Run:
    return scenarios.outage_run(services["outage_run"])


@pytest.fixture(scope="session")
def timeout_run(services) -> scenarios.Run:
    return scenarios.timeout_run(services["timeout_run"])


@pytest.fixture(scope="session")
def export_stall_run(tmp_path_factory) -> scenarios.ExportStallRun:
    return scenarios.export_stall_run(tmp_path_factory.mktemp("export_stall_run"))
