"""What a stored model's JSON files say about generation: its default settings and its context length.

Read as plain JSON, as transformers reads them (``GenerationConfig``, ``AutoConfig``), so that serving needs
neither transformers nor PyTorch; an absent key takes transformers' default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from serving.protocol import GenerationSettings

DEFAULT_CONTEXT = 1024  # BART's max_position_embeddings


def generation_config(model_dir: str | os.PathLike) -> dict:
    """The model's generation_config.json ({} when it has none)."""
    path = Path(model_dir) / "generation_config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def default_settings(model_dir: str | os.PathLike) -> GenerationSettings:
    """The model's own generation defaults (its generation_config.json), production values otherwise:
    4 beams unless the model asks for more, 128 new tokens at most."""
    gen = generation_config(model_dir)
    max_new = gen.get("max_new_tokens") or 128
    num_beams = gen.get("num_beams") or 1
    length_penalty = gen.get("length_penalty", 1.0)
    no_repeat = gen.get("no_repeat_ngram_size", 0)
    return GenerationSettings(
        num_beams=num_beams if num_beams > 1 else 4,
        max_new_tokens=max_new,
        min_new_tokens=min(gen.get("min_new_tokens") or 0, max_new),
        length_penalty=float(length_penalty if length_penalty is not None else 1.0),
        no_repeat_ngram_size=no_repeat if no_repeat is not None else 3,
    )


def context_length(model_dir: str | os.PathLike) -> int:
    """Input tokens the model can read (config.json's max_position_embeddings)."""
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    return int(config.get("max_position_embeddings") or DEFAULT_CONTEXT)
