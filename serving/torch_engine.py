"""The PyTorch engine: transformers' ``generate()``, fp16 on CUDA, fp32 on CPU (the GPU image's primary)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from serving.engine_base import Engine
from serving.observers import EngineObserver
from serving.protocol import EngineName, GenerationSettings


class TorchEngine(Engine):
    """PyTorch: fp16 on CUDA, fp32 on CPU, always under ``torch.inference_mode``."""

    def __init__(self, model_dir: str | os.PathLike, model_tag: str = "local", device: str | None = None,
                 threads: int = 0, observer: EngineObserver | None = None) -> None:
        import torch
        from transformers import AutoModelForSeq2SeqLM

        super().__init__(model_dir, model_tag, observer)
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForSeq2SeqLM.from_pretrained(self.model_dir, dtype=dtype).to(self.device).eval()
        self.engine = EngineName.TORCH_CUDA if self.device.type == "cuda" else EngineName.TORCH_CPU

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray, settings: GenerationSettings) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model.generate(input_ids=torch.from_numpy(input_ids).to(self.device),
                                      attention_mask=torch.from_numpy(attention_mask).to(self.device),
                                      **generate_kwargs(settings))
        return out.cpu().numpy()


def generate_kwargs(settings: GenerationSettings) -> dict[str, Any]:
    """transformers' ``generate()`` arguments for these settings (deterministic search, no sampling)."""
    return dict(
        num_beams=settings.num_beams,
        max_new_tokens=settings.max_new_tokens,
        min_new_tokens=settings.min_new_tokens,
        length_penalty=settings.length_penalty,
        no_repeat_ngram_size=settings.no_repeat_ngram_size,
        early_stopping=settings.num_beams > 1,
        do_sample=False,
    )
