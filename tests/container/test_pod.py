"""container/pod.py: the cpu overlay's Deployment, rendered by kubectl, as the `podman run` options the
container test runs the image with."""

from __future__ import annotations

import pytest

from container.pod import cpu_pod, quantity


def option_values(options: tuple[str, ...], flag: str) -> list[str]:
    return [options[i + 1] for i, option in enumerate(options) if option == flag]


@pytest.fixture(scope="module")
def pod():
    return cpu_pod()


def test_the_pod_runs_read_only_as_its_user_without_privileges(pod):
    assert option_values(pod.options, "--user") == ["1034:1034"]
    assert "--read-only" in pod.options and "--read-only-tmpfs=false" in pod.options
    assert option_values(pod.options, "--cap-drop") == ["all"]
    assert option_values(pod.options, "--security-opt") == ["no-new-privileges"]


def test_only_the_pods_volumes_are_writable_with_their_size_limits(pod):
    tmpfs = {spec.split(":")[0]: spec for spec in option_values(pod.options, "--tmpfs")}
    assert set(tmpfs) == {"/tmp", "/var/lib/bentoml", "/var/lib/summarizer/feedback"}
    assert f"size={512 * 2**20}" in tmpfs["/tmp"] and f"size={64 * 2**20}" in tmpfs["/var/lib/bentoml"]
    assert f"size={2 * 2**30}" in tmpfs["/var/lib/summarizer/feedback"]  # the feedback store's own volume


def test_limits_environment_port_and_grace_period_come_from_the_manifests(pod):
    assert option_values(pod.options, "--cpus") == ["2"]
    assert option_values(pod.options, "--memory") == [str(2 * 2**30)]
    env = dict(item.split("=", 1) for item in option_values(pod.options, "--env"))
    assert env == pod.env
    # The ConfigMap (base + cpu overlay), then the container's env with $(VAR) expanded.
    assert env["SUMMARIZER_PRIMARY"] == "onnx" and env["SUMMARIZER_ONNX_THREADS"] == "2"
    assert env["BENTOML_HOME"] == "/var/lib/bentoml" and env["XDG_CACHE_HOME"] == "/tmp/.cache"
    assert env["OTEL_RESOURCE_ATTRIBUTES"].startswith("k8s.pod.name=dialogue-summarizer-container-test,")
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env  # no collector where the test runs
    assert pod.port == 3000 and pod.termination_grace_s == 150


def test_quantities():
    assert quantity("2Gi", "memory") == 2 * 2**30
    assert quantity("500m", "cpu") == 0.5
    assert quantity(2, "cpu") == 2
    with pytest.raises(ValueError, match="use e.g. 2Gi, 512Mi, 2 or 500m"):
        quantity("2GB", "memory limit")
