"""What ``bentoml serve`` does when it cannot serve: bad settings, a missing model, a backend that cannot load."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from harness import bentoml_serve, http_ready
from model_store.layout import HF_SUBDIR
from model_store.store import get_model, import_model


def failed_start(env: dict[str, str], log_path) -> tuple[int, str]:
    """Start ``bentoml serve``, expect it to exit before it is ready; its exit code and output."""
    served = bentoml_serve(log_path, env)
    with pytest.raises(RuntimeError, match="exited with"):
        served.start(timeout_s=120)
    return served.proc.returncode, served.log()


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
    assert "not-imported-model" in output and "python -m model_store import" in output


@pytest.fixture
def model_with_damaged_weights(tiny_model_dir, bentoml_home) -> str:
    """The tiny BART stored without an ONNX export, its PyTorch weights then overwritten (a damaged store)."""
    tag = import_model(str(tiny_model_dir), "tiny-bart-damaged", onnx=False).tag
    Path(get_model(tag).path_of(HF_SUBDIR), "model.safetensors").write_bytes(b"not a safetensors file")
    return tag


def test_readiness_is_refused_while_no_routed_backend_has_its_model(model_with_damaged_weights, serve_env, tmp_path):
    """PyTorch is the only routed backend and its weights cannot be read: the service is alive, not ready."""
    env = serve_env(model_with_damaged_weights, SUMMARIZER_PRIMARY="torch", SUMMARIZER_FALLBACK="none")
    served = bentoml_serve(tmp_path / "serve.log", env)
    served.ready = http_ready(f"{served.url}/livez")  # the API service is up; readiness is what is tested
    served.start(timeout_s=120)
    try:
        deadline = time.monotonic() + 60
        while "SafetensorError" not in served.log():  # the PyTorch backend failed to load, as intended
            assert time.monotonic() < deadline, served.log_tail()
            time.sleep(0.5)
        started = time.monotonic()
        response = httpx.get(f"{served.url}/readyz", timeout=10)
        assert response.status_code != 200, response.text
        assert time.monotonic() - started < 5  # a backend that cannot answer does not hold the probe
    finally:
        served.stop(grace_s=5)  # BentoML keeps restarting the failed backend; no need to wait for it
