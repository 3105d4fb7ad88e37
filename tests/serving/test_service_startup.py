"""What ``bentoml serve`` does when it cannot serve: bad settings, a missing model, a damaged model file, a backend
that cannot load. A start-up error is one message with its fix, no traceback, and the server exits (BentoML
would respawn a worker that failed for ever)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from harness import bentoml_serve, http_ready
from model_store.store import get_model, import_model


EXIT_WITHIN_S = 60  # the main process exits before it starts any worker (about 2 s on an idle machine)


def failed_start(env: dict[str, str], log_path) -> tuple[int, str]:
    """Start ``bentoml serve``, expect it to exit before it is ready and within EXIT_WITHIN_S; its exit code and
    output, which must hold no traceback."""
    served = bentoml_serve(log_path, env)
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="exited with"):
            served.start(timeout_s=EXIT_WITHIN_S)
    finally:
        served.stop(grace_s=5)  # nothing left when it exited as it should; whatever it started when not
    assert time.monotonic() - started < EXIT_WITHIN_S
    output = served.log()
    assert "Traceback" not in output, output[-3000:]
    return served.proc.returncode, output


def test_invalid_settings_stop_the_server_with_one_line_per_variable(tiny_model, serve_env, tmp_path):
    code, output = failed_start(serve_env(tiny_model, SUMMARIZER_PRIMARY="gpu", SUMMARIZER_MAX_PENDING="0",
                                          SUMMARIZER_INJECT_FAULT="torch:slow", SUMMARIZER_PRIMARY_TIMEOUT_S="soon"),
                                tmp_path / "serve.log")
    assert code != 0
    assert "invalid serving configuration:" in output
    for line in ("SUMMARIZER_PRIMARY='gpu': Input should be 'auto', 'torch' or 'onnx'",
                 "SUMMARIZER_MAX_PENDING='0': Input should be greater than or equal to 1",
                 "SUMMARIZER_INJECT_FAULT='torch:slow': item 'torch:slow' must be BACKEND:error or BACKEND:hang",
                 "SUMMARIZER_PRIMARY_TIMEOUT_S='soon': Input should be a valid number"):
        assert line in output, output[-3000:]


def test_missing_model_names_the_import_command(serve_env, tmp_path):
    code, output = failed_start(serve_env("not-imported-model"), tmp_path / "serve.log")
    assert code != 0
    assert output.strip().startswith("error: model 'not-imported-model:latest' is not in the BentoML model store")
    assert "python -m model_store import <hf-id-or-directory> --name not-imported-model" in output


@pytest.fixture(scope="module")
def checked_model(tiny_model_dir, bentoml_home) -> str:
    """The tiny BART (PyTorch weights and ONNX export) under a name of its own: the tests damage its files."""
    return import_model(str(tiny_model_dir), "tiny-bart-checked").tag


def _remove(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _alter_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, rel, problem, routing", [
    (_remove, "hf/tokenizer.json", "missing", {}),  # read by both backends
    (_truncate, "onnx/beam_search.weights", "truncated or altered", {}),
    # PyTorch's weights are checked where PyTorch is routed (made the primary here: there is no GPU)
    (_alter_one_byte, "hf/model.safetensors", "truncated or altered", {"SUMMARIZER_PRIMARY": "torch"}),
], ids=["missing", "truncated", "one-byte-altered"])
def test_a_damaged_model_file_stops_the_server_with_its_name_and_the_fix(checked_model, serve_env, tmp_path,
                                                                         damage, rel, problem, routing):
    path = Path(get_model(checked_model).path) / rel
    original = path.read_bytes()
    damage(path)
    try:
        code, output = failed_start(serve_env(checked_model, **routing), tmp_path / "serve.log")
    finally:
        path.write_bytes(original)
    assert code != 0
    [message] = [line for line in output.splitlines() if line.startswith("error:")]
    assert f"{rel} {problem}" in message, output
    assert f"python -m model_store import {tiny_model_dir_of(checked_model)} --name tiny-bart-checked" in message


def tiny_model_dir_of(tag: str) -> str:
    return get_model(tag).info.metadata["source"]


@pytest.fixture
def model_with_damaged_weights(tiny_model_dir, bentoml_home, tmp_path) -> str:
    """The tiny BART stored without an ONNX export from weights that PyTorch cannot load (one tensor of the
    wrong shape): its checksums match, so it passes the start-up check and fails in the backend."""
    from safetensors.numpy import load_file, save_file

    source = tmp_path / "wrong-shape"
    shutil.copytree(tiny_model_dir, source)
    weights = load_file(source / "model.safetensors")
    name = next(k for k in sorted(weights) if k.endswith("fc1.weight"))
    weights[name] = weights[name][..., :1].copy()
    save_file(weights, source / "model.safetensors", metadata={"format": "pt"})
    return import_model(str(source), "tiny-bart-damaged", onnx=False).tag


def test_readiness_is_refused_while_no_routed_backend_has_its_model(model_with_damaged_weights, serve_env, tmp_path):
    """PyTorch is the only routed backend and its weights cannot be read: the service is alive, not ready."""
    env = serve_env(model_with_damaged_weights, SUMMARIZER_PRIMARY="torch", SUMMARIZER_FALLBACK="none")
    served = bentoml_serve(tmp_path / "serve.log", env)
    served.ready = http_ready(f"{served.url}/livez")  # the API service is up; readiness is what is tested
    served.start(timeout_s=120)
    try:
        deadline = time.monotonic() + 60
        while "size mismatch" not in served.log():  # the PyTorch backend failed to load, as intended
            assert time.monotonic() < deadline, served.log_tail()
            time.sleep(0.5)
        started = time.monotonic()
        response = httpx.get(f"{served.url}/readyz", timeout=10)
        assert response.status_code != 200, response.text
        assert time.monotonic() - started < 5  # a backend that cannot answer does not hold the probe
    finally:
        served.stop(grace_s=5)  # BentoML keeps restarting the failed backend; no need to wait for it
