"""checkov, from a virtual environment of its own (.venv-checkov), created on first use.

checkov pins many packages (packaging 23, networkx 2, python-dateutil 2, ...) that would downgrade what
.venv holds, so it cannot go into requirements-dev.txt; requirements-checkov.txt pins its version. The
environment is rebuilt when that file changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "requirements-checkov.txt"
VENV = REPO_ROOT / ".venv-checkov"
STAMP = VENV / "installed-from.txt"
INSTALL_TIMEOUT_S = 900
NO_REASON = "No comment provided"  # what checkov records for a skip annotation without "=reason"


@dataclass(frozen=True)
class Finding:
    check_id: str
    name: str
    resource: str
    file: str
    reason: str  # for skipped checks: the text after "=" in the checkov.io/skip annotation


@dataclass(frozen=True)
class Report:
    passed: list[Finding]
    failed: list[Finding]
    skipped: list[Finding]


def checkov_binary() -> Path:
    """Path of checkov, installing it first when .venv-checkov is missing or out of date."""
    binary = VENV / "bin" / "checkov"
    wanted = REQUIREMENTS.read_text()
    if binary.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return binary
    # The base interpreter, not .venv's: a venv made from a venv still works, but this keeps them apart.
    python = getattr(sys, "_base_executable", sys.executable)
    for argv in ([python, "-m", "venv", "--clear", str(VENV)],
                 [str(VENV / "bin" / "pip"), "install", "--quiet", "-r", str(REQUIREMENTS)]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(f"could not install checkov into {VENV} ({' '.join(argv)}):\n"
                               f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    STAMP.write_text(wanted)
    return binary


def run_checkov(directory: Path) -> Report:
    """checkov's Kubernetes checks on every manifest under ``directory``."""
    argv = [str(checkov_binary()), "--directory", str(directory), "--framework", "kubernetes",
            "--output", "json", "--skip-download"]  # else checkov asks its vendor's API for guidelines
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    # Exit 1 means "checks failed" and still prints the report; anything unparsable is checkov breaking.
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"checkov exited {result.returncode} without a JSON report:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}") from None
    report = report if isinstance(report, dict) else report[0]
    if "results" not in report:
        raise AssertionError(f"checkov found nothing to check in {directory}: {report}")
    results = report["results"]
    return Report(*(_findings(results[key]) for key in ("passed_checks", "failed_checks", "skipped_checks")))


def _findings(checks: list[dict]) -> list[Finding]:
    return [Finding(c["check_id"], c["check_name"], c["resource"], c["file_path"],
                    (c.get("check_result") or {}).get("suppress_comment") or "") for c in checks]
