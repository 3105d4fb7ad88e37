"""Fixtures of the deploy tests: the overlays rendered once per session (tests/deploy/manifests.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, OVERLAYS, Rendered, kustomize
from tests.feedback.conftest import postgres  # noqa: F401 - a real PostgreSQL for the shared-state pod


COMPONENTS = ("bart-large-cnn", "api-keys", "shared-state")


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, Rendered]:
    """The cpu and gpu overlays as applied, and the cpu overlay with each component."""
    out = {name: Rendered(name, kustomize(DEPLOY / "overlays" / name)) for name in OVERLAYS}
    for component in COMPONENTS:
        # A component is used from an overlay; this one is what a user would write (paths must be relative).
        overlay = tmp_path_factory.mktemp(f"{component}-overlay")
        deploy = Path(os.path.relpath(DEPLOY, overlay))
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": [str(deploy / "overlays" / "cpu")],
            "components": [str(deploy / "components" / component)]}))
        out[f"cpu+{component}"] = Rendered(f"cpu+{component}", kustomize(overlay))
    return out


@pytest.fixture(scope="session", params=sorted(OVERLAYS) + [f"cpu+{c}" for c in COMPONENTS])
def manifests(request, rendered) -> Rendered:
    return rendered[request.param]
