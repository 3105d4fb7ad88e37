"""Which stored files the start-up check hashes: those the backends that may serve on this machine read."""

from __future__ import annotations

import pytest

from serving.config import ServingConfig
from serving.protocol import BackendName
from serving.startup import backends_that_may_serve, files_read_by

FILES = ["hf/config.json", "hf/tokenizer.json", "hf/model.safetensors", "hf/model-00001-of-00002.safetensors",
         "hf/model.safetensors.index.json", "hf/pytorch_model.bin", "onnx/beam_search.onnx", "onnx/beam_search.weights"]


@pytest.mark.parametrize("backends, skipped", [
    # the CPU image holds no PyTorch weights
    ({BackendName.ONNX}, {"hf/model.safetensors", "hf/model-00001-of-00002.safetensors",
                          "hf/model.safetensors.index.json", "hf/pytorch_model.bin"}),
    ({BackendName.TORCH}, {"onnx/beam_search.onnx", "onnx/beam_search.weights"}),
    ({BackendName.TORCH, BackendName.ONNX}, set()),
])
def test_each_backend_checks_the_files_it_reads(backends, skipped):
    wanted = files_read_by(backends)
    assert {rel for rel in FILES if not wanted(rel)} == skipped


def test_without_a_gpu_only_the_onnx_backend_may_serve(monkeypatch):
    monkeypatch.setattr("serving.startup.cuda_available", lambda: False)
    assert backends_that_may_serve(ServingConfig.load({})) == {BackendName.ONNX}
    torch_primary = ServingConfig.load({"SUMMARIZER_PRIMARY": "torch", "SUMMARIZER_FALLBACK": "none"})
    assert backends_that_may_serve(torch_primary) == {BackendName.TORCH}


def test_with_a_gpu_both_backends_may_serve(monkeypatch):
    monkeypatch.setattr("serving.startup.cuda_available", lambda: True)
    assert backends_that_may_serve(ServingConfig.load({})) == {BackendName.TORCH, BackendName.ONNX}
    onnx_only = ServingConfig.load({"SUMMARIZER_PRIMARY": "onnx", "SUMMARIZER_FALLBACK": "none"})
    assert backends_that_may_serve(onnx_only) == {BackendName.ONNX}
