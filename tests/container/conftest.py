"""``bentoml build`` of a recipe (bentofile.yaml, bentofile.gpu.yaml) with the tiny BART, for the recipes' tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def build_bento(tiny_model, bentoml_home) -> Callable[[str], str]:
    """bentofile -> tag of the Bento built from it; a child process, because the service reads
    SUMMARIZER_MODEL when it is imported."""
    def build(bentofile: str) -> str:
        bentoml = str(Path(sys.executable).with_name("bentoml"))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SUMMARIZER_")},
               "BENTOML_HOME": str(bentoml_home), "SUMMARIZER_MODEL": tiny_model}
        result = subprocess.run([bentoml, "build", "-f", bentofile, "--output", "tag"], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        [tag] = re.findall(r"__tag__:(\S+)", result.stdout)
        return tag
    return build
