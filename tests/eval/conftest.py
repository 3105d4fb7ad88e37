"""Fixtures of the ROUGE suite's tests (tests/conftest.py provides the BentoML home and the models)."""

from __future__ import annotations

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
