"""The cpu overlay's pod, as far as it can be run without a cluster: a real ``bentoml serve`` with the
environment the Deployment and its ConfigMap give the container, and the pod's volumes as directories.

- Read-only root filesystem: the service writes only where the pod has a volume (/tmp, BENTOML_HOME, the
  feedback store's),
  never into HOME, which is part of the image.
- The autoscaler's query, evaluated by Prometheus' own engine (promtool) on what the service's /metrics
  showed while it held requests, with the labels the PodMonitor's scrape adds, counts those requests:
  not the backends' calls, not the probes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness import bentoml_serve
from tests.deploy.manifests import Rendered

PROMTOOL = shutil.which("promtool")
IN_FLIGHT_METRIC = "bentoml_service_request_in_progress"
DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"
HELD = {"/summarize": 2, "/summarize_batch": 1}  # requests held in flight, by route
DOWNWARD_API = {"metadata.name": "dialogue-summarizer-5d9c7b-x2x7k", "metadata.namespace": "dialogue-summarizer",
                "spec.nodeName": "node-a"}


def container_environment(m: Rendered, volumes: dict[str, Path]) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom, then env with $(VAR) expanded), with
    every path on a volume moved to that volume's local directory."""
    container = m.container()
    [source] = container["envFrom"]
    assert source["configMapRef"]["name"] == m.one("ConfigMap")["metadata"]["name"]
    env = dict(m.config())
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda ref: env[ref.group(1)], item["value"])
        else:
            env[item["name"]] = DOWNWARD_API[item["valueFrom"]["fieldRef"]["fieldPath"]]
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}
    for name, value in env.items():
        for mount_path, local in mounts.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                env[name] = str(local) + value[len(mount_path):]
    return env


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def in_flight_samples(metrics_text: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for family in text_string_to_metric_families(metrics_text)
            if family.name == IN_FLIGHT_METRIC for s in family.samples]


def held_by_public_service(samples) -> float:
    return sum(value for labels, value in samples
               if labels.get("runner_name") == "dialogue_summarizer" and labels.get("endpoint") in HELD)


def series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


@pytest.fixture(scope="module")
def pod(rendered, tiny_model, bentoml_home, tmp_path_factory):
    """The cpu overlay's container, serving the tiny BART with its ONNX backend hung (requests stay in flight)."""
    m = rendered["cpu"]
    root = tmp_path_factory.mktemp("pod")
    volumes = {"tmp": root / "tmp", "bentoml-home": bentoml_home,  # the test store already holds the model
               "feedback": root / "feedback"}
    home = root / "home"  # part of the image: read-only in the pod
    for directory in (volumes["tmp"], volumes["feedback"], home):
        directory.mkdir()
    env = container_environment(m, volumes)
    env = {name: value for name, value in env.items() if not name.startswith("OTEL_EXPORTER_")}  # no collector here
    env |= {"HOME": str(home), "TMPDIR": str(volumes["tmp"]), "SUMMARIZER_MODEL": tiny_model,
            "SUMMARIZER_ONNX_THREADS": "1", "SUMMARIZER_INJECT_FAULT": "onnx:hang",
            "SUMMARIZER_PRIMARY_TIMEOUT_S": "60"}
    server = bentoml_serve(root / "serve.log", env).start()
    try:
        yield server, home, volumes["tmp"]
    finally:
        server.stop(grace_s=5)  # the hung ONNX worker sleeps through SIGTERM


def test_the_service_writes_only_where_the_pod_has_volumes(pod):
    server, home, tmp = pod
    response = httpx.get(server.url + "/model", timeout=30)
    assert response.status_code == 200, response.text
    assert files_under(home) == [], "these would fail on the read-only root filesystem: add a volume or a variable"
    # The Unix sockets between BentoML's processes: /tmp really is used, so its volume is needed.
    assert any(name.startswith("bentoml-uds-") for name in files_under(tmp)), files_under(tmp)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus; "
                                              ".ci/run installs it); the autoscaler's query not evaluated")
def test_autoscaler_query_counts_the_requests_the_pod_holds(pod, rendered, tmp_path):
    server, _, _ = pod
    m = rendered["cpu"]
    bodies = {"/summarize": {"dialogue": DIALOGUE}, "/summarize_batch": {"dialogues": [DIALOGUE, DIALOGUE]}}
    with ThreadPoolExecutor(max_workers=sum(HELD.values())) as pool:
        for route, count in HELD.items():
            for _ in range(count):
                pool.submit(httpx.post, server.url + route, json=bodies[route], timeout=90)
        deadline, samples = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            samples = in_flight_samples(httpx.get(server.url + "/metrics", timeout=10).text)
            if held_by_public_service(samples) == sum(HELD.values()):
                break
            time.sleep(0.2)
        assert held_by_public_service(samples) == sum(HELD.values()), samples
        server.stop(grace_s=5)  # lets the held requests end, so that the pool can close
    assert any(labels.get("runner_name") == "summarizer_onnx" and value > 0 for labels, value in samples), \
        "the hung backend call is in flight too, and the query must not count it"

    monitor = m.one("PodMonitor")
    namespace = monitor["metadata"]["namespace"]
    # The labels Prometheus adds to a PodMonitor's scrape (job is namespace/name); honorLabels keeps
    # BentoML's `endpoint` (the route), so `endpoint` is the port name only on `up`.
    target = {"namespace": namespace, "job": f"{namespace}/{monitor['metadata']['name']}",
              "pod": DOWNWARD_API["metadata.name"], "container": "summarizer", "instance": "10.1.2.3:3000"}
    scraped = [{"series": series(IN_FLIGHT_METRIC, {**target, **labels}), "values": f"{value:g}x8"}
               for labels, value in samples]
    up = {"series": series("up", {**target, "endpoint": "http"}), "values": "1x8"}
    query = next(t for t in m.one("ScaledObject")["spec"]["triggers"] if t["type"] == "prometheus")
    query = query["metadata"]["query"]
    cases = [  # (input series, expected value of the query; None: no result, which KEDA treats as an error)
        (scraped + [up], float(sum(HELD.values()))),
        ([up], 0.0),  # a healthy pod that has not served a request yet: no series, and no load
        # Nothing scraped from this deployment (PodMonitor not selected, pods down): not "no load".
        ([{"series": series("up", {"job": "some-other-job"}), "values": "1x8"}], None),
    ]
    tests = [{"interval": "15s", "input_series": inputs,
              "promql_expr_test": [{"expr": query, "eval_time": "1m",
                                    "exp_samples": [] if expected is None else [{"labels": "{}", "value": expected}]}]}
             for inputs, expected in cases]
    unit_tests = tmp_path / "autoscaler-query.test.yml"
    unit_tests.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "15s", "tests": tests}))
    result = subprocess.run([PROMTOOL, "test", "rules", str(unit_tests)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
