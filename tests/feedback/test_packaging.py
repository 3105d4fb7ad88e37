"""Both Bento recipes carry every package of ours that service.py imports (feedback/ among them): a package
left out builds a Bento that cannot start."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def packages_service_imports() -> set[str]:
    tree = ast.parse((REPO_ROOT / "service.py").read_text(encoding="utf-8"))
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return {name for name in names if (REPO_ROOT / name / "__init__.py").exists()}


@pytest.mark.parametrize("recipe", ["bentofile.yaml", "bentofile.gpu.yaml"])
def test_the_bento_includes_every_package_the_service_imports(recipe):
    included = yaml.safe_load((REPO_ROOT / recipe).read_text())["include"]
    assert "feedback" in packages_service_imports()
    missing = sorted(p for p in packages_service_imports() if f"{p}/*.py" not in included)
    assert not missing, f"{recipe} does not include {missing}: add '<package>/*.py' to its include list"
