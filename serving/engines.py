"""Inference engines: the same seq2seq generation on PyTorch and on ONNX Runtime.

    engine_base.py   Engine (encode, group, pad, predict, decode; numpy only), grouping
    torch_engine.py  TorchEngine: transformers' generate() on PyTorch (the GPU image's primary)
    onnx_engine.py   OnnxEngine: ONNX Runtime's BeamSearch operator, no PyTorch, transformers or optimum
    tokenization.py  the model's tokenizer through ``tokenizers``; model_config.py its JSON defaults

The service code and the evaluation suite both call ``Engine.generate``; what is scored is what is served.
This module only gathers the names its users import; importing it imports neither PyTorch nor transformers.
"""

from model_store.layout import HF_SUBDIR, ONNX_SUBDIR
from serving.engine_base import EncodedJob, Engine, group_by_settings_and_length
from serving.model_config import context_length, default_settings
from serving.onnx_engine import OnnxEngine, session_options
from serving.torch_engine import TorchEngine, generate_kwargs

__all__ = ["HF_SUBDIR", "ONNX_SUBDIR", "EncodedJob", "Engine", "OnnxEngine", "TorchEngine", "context_length",
           "default_settings", "generate_kwargs", "group_by_settings_and_length", "session_options"]
