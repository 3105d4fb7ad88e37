"""How the top-level packages depend on each other: shipped code never imports tests/, and no two
packages import each other (so each can be read, tested and replaced on its own)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.name for p in REPO_ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests")
MODULES = ["service"]  # top-level modules that are not packages


def _imports(path: Path) -> set[str]:
    """Top-level names of everything a file imports (absolute imports; we use no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def _graph() -> dict[str, set[str]]:
    ours = set(PACKAGES) | set(MODULES) | {"tests"}
    graph: dict[str, set[str]] = {}
    for name in PACKAGES + MODULES:
        files = [REPO_ROOT / f"{name}.py"] if name in MODULES else sorted((REPO_ROOT / name).rglob("*.py"))
        graph[name] = {dep for f in files for dep in _imports(f) if dep in ours and dep != name}
    return graph


def test_the_project_has_the_packages_this_test_reads():
    assert {"serving", "observability", "client", "eval", "bench", "model_store", "harness"} <= set(PACKAGES)


def test_no_shipped_module_imports_tests():
    offenders = {name: deps for name, deps in _graph().items() if "tests" in deps}
    assert not offenders, f"shipped code imports tests/: {offenders}"


def test_no_two_top_level_packages_import_each_other():
    graph = _graph()
    cycles = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, set())})
    assert not cycles, f"packages that import each other: {cycles}; dependencies: {graph}"


def test_serving_knows_nothing_of_opentelemetry():
    for path in (REPO_ROOT / "serving").rglob("*.py"):
        assert "opentelemetry" not in _imports(path), f"{path.name} imports OpenTelemetry: report through an observer"
