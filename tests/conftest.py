"""Shared fixtures: a private BentoML home with a tiny BART (real BART tokenizer) and the shipped default model.

Everything is real: the model store is BentoML's, the ONNX export is optimum's, the server is
``bentoml serve``. Only the model is small, so the suite runs on two CPU cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = "tiny-bart"


@pytest.fixture(scope="session")
def bentoml_home(tmp_path_factory) -> Path:
    """A BentoML home of the test session's own; set in this process and inherited by servers."""
    home = tmp_path_factory.mktemp("bentoml_home")
    os.environ["BENTOML_HOME"] = str(home)
    from bentoml._internal.configuration.containers import BentoMLContainer

    BentoMLContainer.bentoml_home.set(str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from model_store.tiny import build_tiny_bart

    return build_tiny_bart(tmp_path_factory.mktemp("tiny") / "tiny-bart")


@pytest.fixture(scope="session")
def tiny_model(bentoml_home, tiny_model_dir) -> str:
    """Tag of the tiny BART imported into the test model store (HF files + ONNX export)."""
    from model_store.store import import_model

    return import_model(str(tiny_model_dir), TINY_MODEL, labels={"purpose": "test"}).tag


@pytest.fixture(scope="session")
def default_model(bentoml_home) -> str:
    """Tag of the shipped default model imported into the test model store."""
    from model_store.store import import_default

    return import_default()


@pytest.fixture(scope="session")
def serve_env(bentoml_home):
    """Environment for a ``bentoml serve`` child: the test store, no tracking, small limits."""
    def make(model: str, **extra: str) -> dict[str, str]:
        # One API worker unless a test asks for more: SUMMARIZER_MAX_PENDING is counted per API worker, and the
        # tests that count 503s need every request in one process (a second worker also costs ~200 MB).
        # The response cache off unless a test asks for it (tests/cache): the other tests send the same
        # dialogues again and again to see generation, fallback and failures happen.
        return {"BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true", "SUMMARIZER_MODEL": model,
                "SUMMARIZER_ONNX_THREADS": "1", "SUMMARIZER_TORCH_THREADS": "1", "SUMMARIZER_API_WORKERS": "1",
                "SUMMARIZER_CACHE": "off", **extra}
    return make
