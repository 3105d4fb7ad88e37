"""GPU throughput of a model with bart-large-cnn's exact architecture: summaries per second by batch size.

    python -m bench.gpu                          # CUDA: fp16, 4 beams, 128 new tokens, batch 1..128
    python -m bench.gpu --batch-sizes 32,64 --repeats 5
    python -m bench.gpu --tiny                   # smoke run on CPU (tiny model, few tokens): tests use it

The model is ``BartForConditionalGeneration`` built from facebook/bart-large-cnn's configuration in code
(d_model 1024, 12 + 12 layers, 16 heads, FFN 4096, vocabulary 50264, 1024 positions: 406M parameters)
with random weights (seeded): speed does not depend on the weights once every sequence is forced to
generate exactly ``--new-tokens`` tokens (``min_new_tokens = max_new_tokens``). Generation settings are
bart-large-cnn's own (4 beams, no_repeat_ngram_size 3, length_penalty 2.0) unless overridden. Inputs are
DialogSum test dialogues tokenized with the real BART tokenizer (../shared/tokenizers/bart).

Reported per batch size: summaries/s (median over repeats, spread), seconds per batch, the share of time
in the model's forward passes, peak GPU memory. The best figure is compared with the target (40/s on an
H100; the best published bart-large-cnn figure is 12.4/s on a V100).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench.stats import mean, median

BART_LARGE_CNN = dict(vocab_size=50264, d_model=1024, encoder_layers=12, decoder_layers=12,
                      encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                      decoder_ffn_dim=4096, max_position_embeddings=1024, activation_function="gelu",
                      scale_embedding=False, normalize_before=False, add_final_layer_norm=False,
                      pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                      forced_bos_token_id=0, forced_eos_token_id=2)
BART_LARGE_CNN_GENERATION = dict(num_beams=4, no_repeat_ngram_size=3, length_penalty=2.0, early_stopping=True)
TINY = dict(BART_LARGE_CNN, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64)


def build_model(config_kwargs: dict, dtype, device, seed: int = 0):
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(seed)
    config = BartConfig(**config_kwargs)
    with torch.device(device):
        model = BartForConditionalGeneration(config)
    return model.to(dtype=dtype).eval()


def inputs(n: int, max_tokens: int, device) -> tuple:
    """``n`` DialogSum test dialogues (cycled) tokenized with the BART tokenizer, padded as a batch."""
    from transformers import BartTokenizerFast

    from bench.common import load_dialogues
    from model_store.tiny import bart_tokenizer_dir

    tok_dir = bart_tokenizer_dir()
    tokenizer = BartTokenizerFast(vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"))
    enc = tokenizer(load_dialogues(n, seed=5), truncation=True, max_length=max_tokens, padding=True,
                    return_tensors="pt")
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    return enc["input_ids"].to(device), enc["attention_mask"].to(device), lengths


def measure(model, input_ids, attention_mask, new_tokens: int, generation: dict, repeats: int, device) -> dict:
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    forward_s = [0.0]
    starts: list[float] = []

    def pre(_m, _a):
        sync()
        starts.append(time.perf_counter())

    def post(_m, _a, _o):
        sync()
        forward_s[0] += time.perf_counter() - starts.pop()

    kwargs = dict(generation, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    with torch.inference_mode():
        model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)  # warm-up
        sync()
        times, shapes = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            sync()
            times.append(time.perf_counter() - t0)
            shapes = tuple(out.shape)
        # one more call with forward hooks: the share of time in the model itself (sync per call, so
        # this run is slower and only its proportions are used)
        handles = [model.register_forward_pre_hook(pre), model.register_forward_hook(post),
                   model.get_encoder().register_forward_pre_hook(pre), model.get_encoder().register_forward_hook(post)]
        try:
            t0 = time.perf_counter()
            model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            sync()
            hooked_total = time.perf_counter() - t0
        finally:
            for h in handles:
                h.remove()
    batch = input_ids.shape[0]
    new = shapes[1] - 1  # the decoder start token is not generated
    per_s = [batch / t for t in times]
    return {"batch_size": batch, "seconds_per_batch": median(times),
            "summaries_per_s": median(per_s), "summaries_per_s_min": min(per_s),
            "summaries_per_s_max": max(per_s), "repeats": repeats, "generated_tokens": new,
            "all_forced_to_length": new == new_tokens, "model_forward_share": round(forward_s[0] / hooked_total, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model, few tokens, CPU allowed (smoke run)")
    parser.add_argument("--batch-sizes", default=None, help="comma list (default 1,2,4,...,128; tiny: 1,2)")
    parser.add_argument("--new-tokens", type=int, default=None, help="forced output length (default 128; tiny 4)")
    parser.add_argument("--max-input-tokens", type=int, default=1024)
    parser.add_argument("--beams", type=int, default=BART_LARGE_CNN_GENERATION["num_beams"])
    parser.add_argument("--no-repeat-ngram-size", type=int, default=BART_LARGE_CNN_GENERATION["no_repeat_ngram_size"])
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None, help="default fp16 (CPU: fp32)")
    parser.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa", help="attention implementation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="default: cuda when available (required unless --tiny)")
    parser.add_argument("--json", help="also write the results here (default: bench/results/gpu-<time>.json)")
    args = parser.parse_args(argv)

    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.tiny:
        print("error: no CUDA device; use --tiny for a CPU smoke run", file=sys.stderr)
        return 2
    dtype_name = args.dtype or ("fp16" if device.type == "cuda" else "fp32")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    sizes = [int(x) for x in (args.batch_sizes or ("1,2" if args.tiny else "1,2,4,8,16,32,64,128")).split(",")]
    new_tokens = args.new_tokens or (4 if args.tiny else 128)
    config = dict(TINY if args.tiny else BART_LARGE_CNN)
    config["attn_implementation"] = args.attn
    model = build_model(config, dtype, device)
    params = sum(p.numel() for p in model.parameters())
    generation = dict(BART_LARGE_CNN_GENERATION, num_beams=args.beams, no_repeat_ngram_size=args.no_repeat_ngram_size)
    print(f"model: {params / 1e6:.1f}M parameters ({'tiny' if args.tiny else 'bart-large-cnn architecture'}), "
          f"{dtype_name} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"{generation}, {new_tokens} new tokens forced", file=sys.stderr)
    rows = []
    for size in sizes:
        try:
            input_ids, mask, lengths = inputs(size, args.max_input_tokens, device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            row = measure(model, input_ids, mask, new_tokens, generation, args.repeats, device)
            row["input_tokens_mean"] = mean(lengths)
            row["input_tokens_padded"] = input_ids.shape[1]
            if device.type == "cuda":
                row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        except torch.OutOfMemoryError as exc:
            row = {"batch_size": size, "error": f"out of memory: {str(exc)[:200]}"}
            torch.cuda.empty_cache()
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    ok = [r for r in rows if "summaries_per_s" in r]
    best = max(ok, key=lambda r: r["summaries_per_s"]) if ok else None
    from bench.common import machine_info, now_iso, write_results

    result = {"created": now_iso(), "machine": machine_info(), "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "model": "tiny" if args.tiny else "bart-large-cnn architecture, random weights",
              "parameters": params, "dtype": dtype_name, "attn_implementation": args.attn,
              "generation": generation, "new_tokens": new_tokens, "rows": rows,
              "best_summaries_per_s": best["summaries_per_s"] if best else None,
              "best_batch_size": best["batch_size"] if best else None,
              "reference": "12.4 summaries/s: best published bart-large-cnn figure (V100); target 40/s on an H100"}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        path = Path(args.json)
    else:
        path = write_results("gpu", result)
    print_table(rows, best)
    print(f"results: {path}")
    return 0


def print_table(rows: list[dict], best: dict | None) -> None:
    print(f"{'batch':>6} {'summaries/s':>12} {'s/batch':>9} {'forward share':>14} {'peak GiB':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['batch_size']:>6} {r['error']}")
        else:
            print(f"{r['batch_size']:>6} {r['summaries_per_s']:>12.2f} {r['seconds_per_batch']:>9.3f} "
                  f"{r['model_forward_share']:>14.2f} {r.get('peak_memory_gib', '-'):>9}")
    if best:
        print(f"best: {best['summaries_per_s']:.1f} summaries/s at batch {best['batch_size']} (target 40/s on an "
              f"H100; published bart-large-cnn: 12.4/s on a V100)")


if __name__ == "__main__":
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    sys.exit(main())
