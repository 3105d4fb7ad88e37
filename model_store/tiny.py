"""Stand-in BARTs with the real BART tokenizer (no download needed): a tiny one for tests, and one with
bart-large-cnn's exact shape for the memory and size benchmarks (bench/large_model.py).

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


# facebook/bart-large-cnn's config.json and generation settings (406M parameters)
BART_LARGE_CNN_SHAPE = dict(vocab_size=50264, d_model=1024, encoder_layers=12, decoder_layers=12,
                            encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                            decoder_ffn_dim=4096, max_position_embeddings=1024, scale_embedding=False,
                            pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
BART_LARGE_CNN_GENERATION = dict(num_beams=4, max_length=142, min_length=56, no_repeat_ngram_size=3,
                                 length_penalty=2.0, early_stopping=True, bos_token_id=0, eos_token_id=2,
                                 pad_token_id=1, decoder_start_token_id=2, forced_bos_token_id=0,
                                 forced_eos_token_id=2)


def build_bart_large_shaped(dest: str | os.PathLike, seed: int = 0) -> Path:
    """A model with bart-large-cnn's exact shape and generation settings, random weights, saved as a hub
    download is (safetensors, tokenizer files): what "serving at bart-large-cnn scale" is measured on here,
    where the hub cannot be reached."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, BartTokenizerFast, GenerationConfig

    tok_dir = bart_tokenizer_dir()
    tokenizer = BartTokenizerFast(vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"),
                                  model_max_length=1024)
    torch.manual_seed(seed)
    model = BartForConditionalGeneration(BartConfig(**BART_LARGE_CNN_SHAPE)).eval()
    model.generation_config = GenerationConfig(**BART_LARGE_CNN_GENERATION)
    out = Path(dest)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
