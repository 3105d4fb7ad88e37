"""Fixtures of the deploy tests: the overlays rendered once per session (tests/deploy/manifests.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, OVERLAYS, Rendered, kustomize


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, Rendered]:
    """The cpu and gpu overlays as applied, and the cpu overlay with the bart-large-cnn component."""
    out = {name: Rendered(name, kustomize(DEPLOY / "overlays" / name)) for name in OVERLAYS}
    # A component is used from an overlay; this one is what a user would write (paths must be relative).
    overlay = tmp_path_factory.mktemp("bart-large-cnn-overlay")
    deploy = Path(os.path.relpath(DEPLOY, overlay))
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [str(deploy / "overlays" / "cpu")],
        "components": [str(deploy / "components" / "bart-large-cnn")]}))
    out["cpu+bart-large-cnn"] = Rendered("cpu+bart-large-cnn", kustomize(overlay))
    return out


@pytest.fixture(scope="session", params=sorted(OVERLAYS) + ["cpu+bart-large-cnn"])
def manifests(request, rendered) -> Rendered:
    return rendered[request.param]
