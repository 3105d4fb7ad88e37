"""Fixtures of the ROUGE suite's tests (imported by tests/test_gate*.py; conftest.py provides the models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.datasets import REPO_ROOT
from model_store.store import DEFAULT_MODEL_DIR

DEFAULT_WEIGHTS = DEFAULT_MODEL_DIR / "model.safetensors"
DEFAULT_BASELINE = REPO_ROOT / "eval" / "baselines" / "dialogue-bart-small.json"


@pytest.fixture(scope="session")
def eval_cache(tmp_path_factory) -> Path:
    """A summary cache of the test session's own: tests generate for real, reruns within a session are fast."""
    return tmp_path_factory.mktemp("eval_cache")


@pytest.fixture(scope="session")
def shipped_model(request) -> str:
    """Tag of the shipped default model in the test store; skips (saying why) until it has been trained."""
    if not DEFAULT_WEIGHTS.exists():
        pytest.skip(f"the shipped default model is not there yet ({DEFAULT_WEIGHTS} missing)")
    return request.getfixturevalue("default_model")


@pytest.fixture(scope="session")
def shipped_baseline(shipped_model) -> Path:
    if not DEFAULT_BASELINE.exists():
        pytest.fail(f"{DEFAULT_BASELINE} is missing: write it with `python -m eval baseline --subset ci` "
                    "(make baseline) and commit it")
    return DEFAULT_BASELINE


def read_report(directory: Path) -> tuple[str, dict]:
    return (directory / "report.md").read_text(), json.loads((directory / "report.json").read_text())


def cli(*args: str) -> int:
    from eval.__main__ import main

    return main(list(args))
