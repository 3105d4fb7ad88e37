"""Reading a Dockerfile that ``bentoml containerize`` renders from container/Dockerfile.j2: its instructions, and
the checks both recipes (CPU and GPU) must pass."""

from __future__ import annotations

import re

# BentoML's Debian and CUDA templates install these (and the deadsnakes PPA for Python); every package of the
# images ships wheels, so neither image needs them.
BUILD_TOOLS = ("build-essential", "gcc", "git", "curl", "software-properties-common", "deadsnakes", "python3-dev")
# What the template may take from the distribution for a base without Python: the interpreter and its venv.
PYTHON_PACKAGES = "--no-install-recommends python3 python3-venv"


def instructions(dockerfile: str) -> list[str]:
    """The instructions, each with its continuation lines, comments and blank lines left out."""
    lines = [line for line in dockerfile.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [step.strip() for step in re.split(r"\n(?=[A-Z]+ )", "\n".join(lines))]


def run_steps(dockerfile: str, containing: str) -> list[str]:
    return [step for step in instructions(dockerfile) if step.startswith("RUN ") and containing in step]


def assert_no_build_tools(dockerfile: str) -> None:
    for tool in BUILD_TOOLS:
        assert re.search(rf"\b{re.escape(tool)}\b", dockerfile) is None, f"the Dockerfile installs {tool}"
    # apt-get runs in one step only, for python3 and its venv module, and only when the base lacks them.
    [python_step] = run_steps(dockerfile, "apt-get")
    assert re.search(r"if ! python3 -c \"import ensurepip, venv\" 2>/dev/null; then", python_step)
    assert re.findall(r"apt-get \S+ install (.+?);", python_step) == [f"-q -y {PYTHON_PACKAGES}"]


def assert_secrets_mounted_for_downloads_only(dockerfile: str) -> None:
    """pip gets the CA bundle and the pip.conf in the step that installs the lock; apt (a base without Python)
    gets the CA bundle; no ENV or ARG carries either into the image."""
    [install] = run_steps(dockerfile, "install.sh")
    assert "--mount=type=secret,id=ca-bundle" in install and "--mount=type=secret,id=pip-conf" in install
    assert "PIP_CERT=/run/secrets/ca-bundle" in install and "PIP_CONFIG_FILE=/run/secrets/pip-conf" in install
    [python_step] = run_steps(dockerfile, "apt-get")
    assert "--mount=type=secret,id=ca-bundle" in python_step
    assert "Acquire::https::CAInfo=/run/secrets/ca-bundle" in python_step
    for variable in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CONFIG_FILE"):
        assert re.search(rf"^(ENV|ARG) {variable}\b", dockerfile, re.M) is None
    secret_steps = [step for step in instructions(dockerfile) if "/run/secrets" in step]
    assert secret_steps == [python_step, install], "a step other than the two downloads reads a build secret"
