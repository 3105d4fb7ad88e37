"""`bentoml build` works offline, and the Bento carries the model (containerize needs an engine: not here)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from model_store.tiny import REPO_ROOT


def _bentoml(*args: str, env: dict[str, str]) -> str:
    exe = Path(sys.executable).with_name("bentoml")
    return subprocess.run([str(exe), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=True).stdout


def test_bentoml_build_carries_the_model(tiny_model, serve_env, bentoml_home, tmp_path):
    env = {**os.environ, **serve_env(tiny_model)}
    out = _bentoml("build", env=env)
    tag = next(word for word in out.split() if word.startswith("dialogue-summarizer:"))
    bento_dir = Path(bentoml_home) / "bentos" / "dialogue-summarizer" / tag.split(":")[1]
    manifest = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    services = {s["name"]: s for s in manifest["services"]}
    assert set(services) == {"dialogue_summarizer", "summarizer_torch", "summarizer_onnx"}
    for service in services.values():
        assert [m["tag"] for m in service["models"]] == [tiny_model]
    assert services["summarizer_torch"]["config"]["resources"] == {"gpu": 1}
    assert (bento_dir / "src" / "service.py").exists() and (bento_dir / "src" / "serving" / "engines.py").exists()
    for package in ("serving", "observability", "model_store", "cache"):  # what service.py imports
        assert (bento_dir / "src" / package / "__init__.py").exists(), f"the Bento lacks {package}/ (bentofile.yaml)"
    assert not (bento_dir / "src" / "tests").exists()
    for page_file in ("ui/page.py", "ui/static/index.html", "ui/static/app.js", "ui/static/style.css"):
        assert (bento_dir / "src" / page_file).is_file(), f"the web page's {page_file} is not in the Bento"

    archive = tmp_path / "summarizer.bento"
    _bentoml("export", tag, str(archive), env=env)
    name, version = tiny_model.split(":")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    for rel in ("hf/model.safetensors", "hf/tokenizer.json", "onnx/beam_search.onnx", "onnx/beam_search.weights"):
        assert f"./models/{name}/{version}/{rel}" in names, rel
