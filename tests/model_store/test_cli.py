"""`python -m model_store` as an operator runs it: a subprocess against the test session's BentoML home.

What each command prints and what it stores: import (with labels, progress lines instead of export noise,
the stored tag and its directory in the store), list, show, verify (also on a corrupted copy), quantize.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest

from model_store.beam_search import GRAPH_FILE
from model_store.onnx_graphs import fp32_weight_matmuls
from model_store.tiny import REPO_ROOT
from serving.engines import HF_SUBDIR, ONNX_SUBDIR

NAME = "cli-tiny"
STORED = re.compile(r"^stored (?P<tag>\S+:\S+) (\((?P<files>\d+) files\) )?at (?P<path>\S+)$")


def model_store(home: Path, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    return subprocess.run([sys.executable, "-m", "model_store", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def stored_line(result: subprocess.CompletedProcess) -> re.Match:
    """The result line: the last line on stdout, ``stored TAG [(N files)] at PATH``."""
    assert result.returncode == 0, result.stderr
    match = STORED.match(result.stdout.splitlines()[-1])
    assert match, result.stdout
    return match


@pytest.fixture(scope="module")
def imported(bentoml_home, tiny_model_dir) -> subprocess.CompletedProcess:
    return model_store(bentoml_home, "import", str(tiny_model_dir), "--name", NAME,
                       "--label", "team=support", "--label", "purpose=cli-test")


def test_import_prints_progress_and_the_stored_tag_and_path(imported, bentoml_home, tiny_model_dir):
    match = stored_line(imported)
    tag, path = match["tag"], Path(match["path"])
    stored = bentoml.models.get(tag)
    # the directory printed is the model's in the store (it used to be a deleted temporary directory)
    assert path == Path(stored.path) == Path(bentoml_home) / "models" / NAME / tag.split(":")[1]
    assert (path / HF_SUBDIR / "model.safetensors").is_file() and (path / ONNX_SUBDIR / GRAPH_FILE).is_file()
    assert int(match["files"]) == len(stored.info.metadata["sha256"])
    assert stored.info.labels["team"] == "support" and stored.info.labels["purpose"] == "cli-test"
    assert stored.info.labels["task"] == "summarization" and stored.info.labels["onnx"] == "yes"
    assert stored.info.metadata["source"] == str(tiny_model_dir.resolve())
    # one line per step on stderr, and nothing else: no tracer warnings, no export chatter
    assert imported.stderr.splitlines() == [
        f"import {NAME} [1/4]: fetch Hugging Face files",
        f"import {NAME} [2/4]: export ONNX (encoder, decoder, BeamSearch graph)",
        f"import {NAME} [3/4]: checksums",
        f"import {NAME} [4/4]: store"], imported.stderr


def test_list_and_show(imported, bentoml_home, tiny_model_dir):
    tag = stored_line(imported)["tag"]
    listed = model_store(bentoml_home, "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["tag", "params", "source", "from"]
    [row] = [r for r in rows if r.startswith(tag + " ")]
    assert row.split()[1:] == ["0.9M", "local", str(tiny_model_dir.resolve())]

    shown = model_store(bentoml_home, "show", f"{NAME}:latest")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["tag"] == tag and info["path"] == str(bentoml.models.get(tag).path)
    assert info["labels"]["team"] == "support"
    assert info["metadata"]["onnx"]["beam_search"] is True
    assert f"{ONNX_SUBDIR}/{GRAPH_FILE}" in info["metadata"]["sha256"]


def test_verify_passes_then_names_a_corrupted_and_a_missing_file(bentoml_home, tiny_model_dir):
    # a copy of its own (no ONNX export: quicker), so that no other test reads the corrupted files
    tag = stored_line(model_store(bentoml_home, "import", str(tiny_model_dir), "--name", "cli-corrupt",
                                  "--no-onnx"))["tag"]
    ok = model_store(bentoml_home, "verify", tag)
    assert (ok.returncode, ok.stdout.strip()) == (0, f"{tag}: all files match their sha256")

    path = Path(bentoml.models.get(tag).path)
    weights = path / HF_SUBDIR / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    weights.write_bytes(bytes(data))
    (path / HF_SUBDIR / "tokenizer.json").unlink()
    bad = model_store(bentoml_home, "verify", tag)
    assert bad.returncode == 1
    assert bad.stdout.strip() == f"{tag}: changed or missing: {HF_SUBDIR}/model.safetensors, {HF_SUBDIR}/tokenizer.json"


def test_quantize_stores_an_int8_copy(imported, bentoml_home):
    source = stored_line(imported)["tag"]
    result = model_store(bentoml_home, "quantize", f"{NAME}:latest", "--name", f"{NAME}-int8")
    match = stored_line(result)
    tag, path = match["tag"], Path(match["path"])
    assert tag.startswith(f"{NAME}-int8:") and path == Path(bentoml.models.get(tag).path)
    assert result.stderr.splitlines() == [
        f"{NAME}-int8: rebuild {GRAPH_FILE} from int8 split graphs (optimum export, quantize, wire)",
        f"{NAME}-int8: store"], result.stderr
    stored = bentoml.models.get(tag)
    assert stored.info.labels["onnx"] == "int8" and stored.info.labels["quantized_from"] == source
    assert stored.info.labels["team"] == "support"  # the source's labels travel
    assert stored.info.metadata["onnx"]["quantization"]["graphs"] == [GRAPH_FILE]
    # the graph the ONNX engine runs is int8 (the source's is fp32: the check can fail)
    assert len(fp32_weight_matmuls(Path(bentoml.models.get(source).path) / ONNX_SUBDIR / GRAPH_FILE)) > 10
    assert fp32_weight_matmuls(path / ONNX_SUBDIR / GRAPH_FILE) == []
    # the int8 copy records its own checksums, and the listing says what it is a copy of
    verified = model_store(bentoml_home, "verify", tag)
    assert verified.returncode == 0, verified.stdout
    listed = model_store(bentoml_home, "list").stdout
    assert re.search(rf"^{re.escape(tag)} .* int8 of {re.escape(source)}$", listed, flags=re.M), listed


def test_errors_are_one_line_that_says_what_to_do(bentoml_home):
    missing = model_store(bentoml_home, "show", "no-such-model:latest")
    assert missing.returncode == 2 and missing.stdout == ""
    [line] = missing.stderr.splitlines()
    assert line.startswith("error: model 'no-such-model:latest' is not in the BentoML model store")
    assert "python -m model_store import <hf-id-or-directory> --name no-such-model" in line
    label = model_store(bentoml_home, "import", ".", "--name", "x", "--label", "team")
    assert label.returncode != 0
    assert label.stderr.strip() == "--label expects KEY=VALUE (e.g. --label team=support), got 'team'"
