"""A tiny BART with the real BART tokenizer: the stand-in model for tests (no download needed).

Random weights, so its summaries are noise, but every code path (tokenizer, generate, ONNX export,
KV cache, batching) is BART's. The tokenizer files come from the shared directory
(``../shared/tokenizers/bart``, or ``$SUMMARIZER_BART_TOKENIZER``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def bart_tokenizer_dir() -> Path:
    path = Path(os.environ.get("SUMMARIZER_BART_TOKENIZER") or REPO_ROOT.parent / "shared" / "tokenizers" / "bart")
    if not (path / "vocab.json").exists():
        raise FileNotFoundError(f"BART tokenizer files not found in {path}; set SUMMARIZER_BART_TOKENIZER")
    return path


def build_tiny_bart(dest: str | os.PathLike, seed: int = 0, d_model: int = 16, layers: int = 2) -> Path:
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, BartTokenizerFast, GenerationConfig

    tok_dir = bart_tokenizer_dir()
    tokenizer = BartTokenizerFast(vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"),
                                  model_max_length=1024)
    torch.manual_seed(seed)
    config = BartConfig(vocab_size=len(tokenizer), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=4 * d_model,
                        decoder_ffn_dim=4 * d_model, max_position_embeddings=1024, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, decoder_start_token_id=2)
    model = BartForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(num_beams=4, max_new_tokens=24, min_new_tokens=2,
                                               no_repeat_ngram_size=3, early_stopping=True, bos_token_id=0,
                                               eos_token_id=2, pad_token_id=1, decoder_start_token_id=2,
                                               forced_bos_token_id=0, forced_eos_token_id=2)
    out = Path(dest)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
