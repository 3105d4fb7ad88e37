"""Train the project's default dialogue summarizer: a compact BART, from scratch, on SAMSum + DialogSum.

    python -m training.train_default --out runs/default --time-budget-min 120
    python -m training.train_default --out runs/default --resume          # continue where it stopped

The result is an ordinary Hugging Face BART directory (``AutoModelForSeq2SeqLM`` + ``AutoTokenizer``), so
every code path that serves ``facebook/bart-large-cnn`` serves it. The recipe:

- a byte-level BPE tokenizer with BART's specials, trained on the training dialogues and summaries
  (a small vocabulary keeps the embedding matrix, and so the model, small);
- ``BartForConditionalGeneration`` from a ``BartConfig`` (sizes on the command line);
- length-bucketed batches under a token budget, AdamW, linear warm-up then cosine decay over the planned
  epochs, label smoothing;
- after every epoch, greedy ROUGE-L on DialogSum validation; the best epoch is saved to ``<out>/best``;
- ``--denoise``: instead of summaries, BART's own pre-training objective on the training dialogues (text
  infilling: spans of Poisson(3) tokens, some 30 % of the dialogue, each hidden behind one ``<mask>``, drawn
  again for every batch; the model writes the dialogue back). A stage before the summarization fine-tune
  (``--init-from <out>/last``), which then starts from weights that already read dialogues;
- a resumable checkpoint (weights, optimizer, scheduler, RNG, position in the epoch) every few minutes
  and at the end of the time budget.

Everything is seeded; on one machine and thread count a rerun gives the same model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from eval.datasets import Example, load_eval_set, load_train_examples
from eval.rouge import mean_scores, score_corpus
from serving.model_config import generation_config
from serving.speakers import FLAG as PLACEHOLDER_FLAG, SpeakerNames, uses_placeholders

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, BART's order for the first four


@dataclass
class TrainConfig:
    out: str = "runs/default"
    data_dir: str | None = None
    seed: int = 1234
    vocab_size: int = 8192
    d_model: int = 256
    encoder_layers: int = 3
    decoder_layers: int = 3
    attention_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    max_source_tokens: int = 512
    max_target_tokens: int = 128
    max_batch_tokens: int = 8192
    max_batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 400
    warmup_ratio: float = 0.0  # when > 0: the warm-up is this share of all steps (instead of warmup_steps)
    label_smoothing: float = 0.1
    epochs: int = 6
    time_budget_min: float = 0.0
    eval_examples: int = 200
    checkpoint_every_min: float = 10.0
    limit_train: int = 0
    threads: int = 0
    bf16: bool = False
    # Fine-tuning (training/finetune_feedback.py): start from this Hugging Face model directory (its tokenizer
    # and weights) instead of a new tokenizer and random weights; "last" keeps the last epoch's weights
    # rather than the best by validation ROUGE-L.
    init_from: str = ""
    keep: str = "best"
    # Speaker names as #PersonN# placeholders in the training dialogues and summaries (serving/speakers.py);
    # the saved model says so in its generation_config.json, and every path that serves it puts names back.
    speaker_placeholders: bool = False
    # Stop after this many epochs of the planned schedule (0: run them all); the default model's first stage
    # stops at epoch 5 of a cosine schedule planned over 8, as the first default model did.
    stop_after_epoch: int = 0
    # The saved model's default no_repeat_ngram_size (generation_config.json); -1 keeps the one it starts with
    # (3 for a new model). Blocking repeated token trigrams mangles names a compact model spells in pieces.
    no_repeat_ngram_size: int = -1
    # Denoising pre-training (BART's text infilling) on the training dialogues instead of summarizing them; no
    # summary to score, so every epoch is kept (<out>/last) and --max-target-tokens bounds the dialogue written.
    denoise: bool = False
    mask_ratio: float = 0.3
    # Keep every finished epoch's weights as <out>/epoch-N (33 MB each at the default size), so the last few
    # can be averaged (python -m training.average); off: only best and last are kept.
    save_epochs: bool = False


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m training.train_default",
        description="Train the compact BART dialogue summarizer shipped as the default model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", help=f"enable {name.replace('_', ' ')}")
        else:
            kind = type(value) if value is not None else str
            parser.add_argument(flag, type=kind, default=value)
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint if it exists")
    args = vars(parser.parse_args(argv))
    resume = args.pop("resume")
    return TrainConfig(**args), resume


# --------------------------------------------------------------------------- tokenizer and model


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path):
    """Byte-level BPE (BART's kind) trained on our dialogues, wrapped as a BartTokenizerFast."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BartTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                            show_progress=False)
    raw = out_dir / "bpe"
    raw.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(raw))
    tokenizer = BartTokenizerFast(vocab_file=str(raw / "vocab.json"), merges_file=str(raw / "merges.txt"),
                                  model_max_length=1024)
    shutil.rmtree(raw)
    return tokenizer


def build_model(cfg: TrainConfig, tokenizer):
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=cfg.d_model,
        encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers,
        encoder_attention_heads=cfg.attention_heads,
        decoder_attention_heads=cfg.attention_heads,
        encoder_ffn_dim=cfg.ffn_dim,
        decoder_ffn_dim=cfg.ffn_dim,
        dropout=cfg.dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,  # as in facebook/bart-*
    )
    model = BartForConditionalGeneration(config)
    model.generation_config = default_generation_config(tokenizer)
    return model


def default_generation_config(tokenizer):
    """What production BART summarizers use: 4 beams, no repeated trigrams, summaries of 5 to 128 tokens."""
    from transformers import GenerationConfig

    return GenerationConfig(
        num_beams=4,
        max_new_tokens=128,
        min_new_tokens=5,
        no_repeat_ngram_size=3,
        length_penalty=1.0,
        early_stopping=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_bos_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )


# --------------------------------------------------------------------------- data


def with_placeholders(example: Example) -> Example:
    """The example as a placeholder model learns it: its speakers' names as #PersonN#, in the summaries too."""
    speakers = SpeakerNames.of(example.dialogue)
    return replace(example, dialogue=speakers.hide(example.dialogue),
                   references=tuple(speakers.hide(r) for r in example.references))


def encode(tokenizer, examples: list[Example], cfg: TrainConfig) -> list[tuple[list[int], list[int]]]:
    if cfg.denoise:  # the dialogue to write back; its noised source is drawn per batch (``infill``)
        dialogues = tokenizer([e.dialogue for e in examples], truncation=True,
                              max_length=min(cfg.max_source_tokens, cfg.max_target_tokens))["input_ids"]
        return [(ids, ids) for ids in dialogues]
    sources = tokenizer([e.dialogue for e in examples], truncation=True, max_length=cfg.max_source_tokens)["input_ids"]
    targets = tokenizer([e.summary for e in examples], truncation=True, max_length=cfg.max_target_tokens)["input_ids"]
    return list(zip(sources, targets))


def infill(ids: list[int], rng: np.random.Generator, mask_id: int, ratio: float = 0.3,
           mean_span: float = 3.0) -> list[int]:
    """BART's text infilling: spans of Poisson(``mean_span``) tokens (at least one) start at random places
    until about ``ratio`` of the tokens between ``<s>`` and ``</s>`` are hidden; each run of hidden tokens
    becomes a single ``mask_id``, so the model must also tell how much is missing."""
    body = ids[1:-1]
    n = len(body)
    if n == 0 or ratio <= 0:
        return list(ids)
    starts = rng.choice(n, size=min(n, max(1, round(n * ratio / mean_span))), replace=False)
    hidden = np.zeros(n, dtype=bool)
    for start, length in zip(starts, np.maximum(1, rng.poisson(mean_span, size=len(starts)))):
        hidden[start:start + length] = True
    out = [ids[0]]
    for i, token in enumerate(body):
        if not hidden[i]:
            out.append(token)
        elif i == 0 or not hidden[i - 1]:
            out.append(mask_id)
    return out + [ids[-1]]


def epoch_batches(lengths: list[int], cfg: TrainConfig, epoch: int) -> list[list[int]]:
    """Length-bucketed batches for one epoch, deterministic in (seed, epoch).

    Shuffle, sort within pools of ~50 batches by source length (so a batch pads little), cut under the
    token budget, then shuffle the batches so the epoch does not run short-to-long.
    """
    rng = np.random.default_rng(cfg.seed * 1000 + epoch)
    order = rng.permutation(len(lengths))
    pool = cfg.max_batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool].tolist(), key=lambda i: lengths[i])
        batch: list[int] = []
        longest = 0
        for i in chunk:
            longest_if_added = max(longest, lengths[i])
            if batch and (longest_if_added * (len(batch) + 1) > cfg.max_batch_tokens or len(batch) >= cfg.max_batch_size):
                batches.append(batch)
                batch, longest_if_added = [], lengths[i]
            batch.append(i)
            longest = longest_if_added
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int, decoder_start_id: int):
    src_len = max(len(s) for s, _ in pairs)
    tgt_len = max(len(t) for _, t in pairs)
    input_ids = torch.full((len(pairs), src_len), pad_id, dtype=torch.long)
    attention = torch.zeros((len(pairs), src_len), dtype=torch.long)
    labels = torch.full((len(pairs), tgt_len), -100, dtype=torch.long)
    decoder_inputs = torch.full((len(pairs), tgt_len), pad_id, dtype=torch.long)
    for row, (src, tgt) in enumerate(pairs):
        input_ids[row, :len(src)] = torch.tensor(src)
        attention[row, :len(src)] = 1
        labels[row, :len(tgt)] = torch.tensor(tgt)
        decoder_inputs[row, 0] = decoder_start_id
        decoder_inputs[row, 1:len(tgt)] = torch.tensor(tgt[:-1])
    return input_ids, attention, decoder_inputs, labels


# --------------------------------------------------------------------------- evaluation


@torch.inference_mode()
def greedy_rouge(model, tokenizer, examples: list[Example], device: torch.device, batch_size: int = 32,
                 placeholders: bool = False) -> dict[str, float]:
    """Quick model selection: greedy decoding, best-of-references ROUGE (the full 4-beam eval is eval/)."""
    model.eval()
    speakers = [SpeakerNames.of(e.dialogue) if placeholders else SpeakerNames() for e in examples]
    predictions: list[str] = []
    ordered = sorted(range(len(examples)), key=lambda i: len(examples[i].dialogue))
    by_index: dict[int, str] = {}
    for start in range(0, len(ordered), batch_size):
        idx = ordered[start:start + batch_size]
        enc = tokenizer([speakers[i].hide(examples[i].dialogue) for i in idx], return_tensors="pt", padding=True,
                        truncation=True, max_length=1024).to(device)
        out = model.generate(**enc, num_beams=1, max_new_tokens=96, no_repeat_ngram_size=3)
        for i, text in zip(idx, tokenizer.batch_decode(out, skip_special_tokens=True)):
            by_index[i] = speakers[i].restore(text.strip())
    predictions = [by_index[i] for i in range(len(examples))]
    model.train()
    return mean_scores(score_corpus(predictions, [e.references for e in examples]))


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, model, optimizer, scheduler, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": state,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }, tmp)
    os.replace(tmp, path)


def save_pretrained(dest: Path, model, tokenizer, info: dict) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


# --------------------------------------------------------------------------- main loop


def lr_lambda_for(cfg: TrainConfig, total_steps: int):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def load_or_build(cfg: TrainConfig, train_examples: list[Example], tok_dir: Path, resume: bool):
    """The tokenizer and model to train: ``cfg.init_from``'s (fine-tuning), else a BPE trained on the examples
    (kept in ``tok_dir``, reused on resume) and a new BART of ``cfg``'s shape."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    if cfg.init_from:
        return AutoTokenizer.from_pretrained(cfg.init_from), AutoModelForSeq2SeqLM.from_pretrained(cfg.init_from)
    if resume and tok_dir.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        texts = [e.dialogue for e in train_examples] + [e.summary for e in train_examples]
        tokenizer = train_tokenizer(texts, cfg.vocab_size, tok_dir.parent)
        tokenizer.save_pretrained(tok_dir)
    return tokenizer, build_model(cfg, tokenizer)


def train(cfg: TrainConfig, resume: bool, train_examples: list[Example] | None = None) -> Path:
    """Train (or, with ``cfg.init_from``, fine-tune) on ``train_examples`` (default: the SAMSum + DialogSum
    training corpora); returns the directory of the kept model (``<out>/best`` or ``<out>/last``)."""

    started = time.monotonic()
    deadline = started + cfg.time_budget_min * 60 if cfg.time_budget_min > 0 else math.inf
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    tok_dir = out / "tokenizer"

    if cfg.keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {cfg.keep!r}")
    if train_examples is None:
        train_examples = load_train_examples(cfg.data_dir)
    if cfg.limit_train:
        train_examples = train_examples[: cfg.limit_train]
    if cfg.init_from and uses_placeholders(generation_config(cfg.init_from)):
        cfg = replace(cfg, speaker_placeholders=True)  # a placeholder model keeps learning with placeholders
    if cfg.speaker_placeholders:
        train_examples = [with_placeholders(e) for e in train_examples]
    if cfg.denoise:  # no summaries written: nothing to score, the last epoch is the one kept
        cfg = replace(cfg, eval_examples=0, keep="last")
    eval_examples = load_eval_set("dialogsum_validation", cfg.data_dir)[: cfg.eval_examples] \
        if cfg.eval_examples > 0 else []

    tokenizer, model = load_or_build(cfg, train_examples, tok_dir, resume)
    model = model.to(device)
    setattr(model.generation_config, PLACEHOLDER_FLAG, cfg.speaker_placeholders)
    if cfg.no_repeat_ngram_size >= 0:
        model.generation_config.no_repeat_ngram_size = cfg.no_repeat_ngram_size
    n_params = sum(p.numel() for p in model.parameters())
    shape = model.config
    print(f"BART {shape.d_model}d {shape.encoder_layers}+{shape.decoder_layers} layers, vocab {len(tokenizer)}: "
          f"{n_params / 1e6:.2f}M parameters on {device}"
          + (f", from {cfg.init_from}" if cfg.init_from else ""), flush=True)

    encoded = encode(tokenizer, train_examples, cfg)
    lengths = [len(s) + len(t) // 2 for s, t in encoded]
    steps_per_epoch = len(epoch_batches(lengths, cfg, 0))
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.warmup_ratio > 0:
        cfg = replace(cfg, warmup_steps=max(1, math.ceil(cfg.warmup_ratio * total_steps)))

    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda_for(cfg, total_steps))
    state = {"epoch": 0, "batch_in_epoch": 0, "step": 0, "best_rougeL": -1.0, "best_epoch": -1, "history": [],
             "train_seconds": 0.0, "config": asdict(cfg)}

    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state.update(ckpt["state"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        np.random.set_state(ckpt["rng"]["numpy"])
        random.setstate(ckpt["rng"]["python"])
        print(f"resumed at epoch {state['epoch']}, batch {state['batch_in_epoch']}, step {state['step']}", flush=True)

    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=cfg.label_smoothing)
    pad_id, start_id = tokenizer.pad_token_id, model.config.decoder_start_token_id
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    last_ckpt = time.monotonic()
    segment_start = time.monotonic()
    stopped_early = False
    model.train()

    last_epoch = min(cfg.epochs, cfg.stop_after_epoch) if cfg.stop_after_epoch > 0 else cfg.epochs
    while state["epoch"] < last_epoch and not stopped_early:
        epoch = state["epoch"]
        batches = epoch_batches(lengths, cfg, epoch)
        bar = tqdm(total=len(batches), initial=state["batch_in_epoch"], desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   mininterval=30, file=sys.stdout)
        running = None
        epoch_loss = state.get("epoch_loss", [0.0, 0])  # [sum, batches] so far this epoch (survives resume)
        for b in range(state["batch_in_epoch"], len(batches)):
            pairs = [encoded[i] for i in batches[b]]
            if cfg.denoise:  # new spans every batch, the same after a resume: drawn from (seed, step)
                noise = np.random.default_rng([cfg.seed, state["step"]])
                pairs = [(infill(target, noise, tokenizer.mask_token_id, cfg.mask_ratio), target)
                         for _, target in pairs]
            input_ids, attention, decoder_inputs, labels = (t.to(device) for t in collate(pairs, pad_id, start_id))
            with autocast:
                logits = model(input_ids=input_ids, attention_mask=attention, decoder_input_ids=decoder_inputs).logits
            loss = loss_fn(logits.float().view(-1, logits.size(-1)), labels.view(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            state["step"] += 1
            state["batch_in_epoch"] = b + 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            epoch_loss = [epoch_loss[0] + loss.item(), epoch_loss[1] + 1]
            state["epoch_loss"] = epoch_loss
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
            now = time.monotonic()
            if now >= deadline:
                stopped_early = True
                break
            if now - last_ckpt > cfg.checkpoint_every_min * 60:
                state["train_seconds"] += now - segment_start
                segment_start = now
                save_checkpoint(ckpt_path, model, optimizer, scheduler, state)
                last_ckpt = now
        bar.close()
        if stopped_early:
            break
        scores = greedy_rouge(model, tokenizer, eval_examples, device, placeholders=cfg.speaker_placeholders) \
            if eval_examples else None
        mean_loss = epoch_loss[0] / max(1, epoch_loss[1])
        state["epoch_loss"] = [0.0, 0]
        state["history"].append({"epoch": epoch + 1, "step": state["step"], "train_loss": mean_loss,
                                  "val_greedy": scores, "elapsed_s": time.monotonic() - started})
        print(f"epoch {epoch + 1}: mean loss {mean_loss:.3f}" + (
              f", DialogSum validation greedy ROUGE-1/2/L "
              f"{scores['rouge1']:.2f}/{scores['rouge2']:.2f}/{scores['rougeL']:.2f}" if scores else ""), flush=True)
        state["epoch"] += 1
        state["batch_in_epoch"] = 0
        if cfg.save_epochs:
            save_pretrained(out / f"epoch-{epoch + 1}", model, tokenizer, {"parameters": n_params, **state})
        if cfg.keep == "best" and scores and scores["rougeL"] > state["best_rougeL"]:
            state["best_rougeL"], state["best_epoch"] = scores["rougeL"], epoch + 1
            save_pretrained(out / "best", model, tokenizer, {"parameters": n_params, **state})
        now = time.monotonic()
        state["train_seconds"] += now - segment_start
        segment_start = now
        save_checkpoint(ckpt_path, model, optimizer, scheduler, state)
        last_ckpt = now

    state["train_seconds"] += time.monotonic() - segment_start
    save_checkpoint(ckpt_path, model, optimizer, scheduler, state)
    save_pretrained(out / "last", model, tokenizer, {"parameters": n_params, **state})
    done = "stopped by the time budget" if stopped_early else "finished"
    if cfg.keep == "last":
        print(f"{done}: epoch {state['epoch']}, step {state['step']}; model in {out / 'last'}", flush=True)
        return out / "last"
    if not (out / "best").exists():  # a budget shorter than one epoch still yields a loadable model
        save_pretrained(out / "best", model, tokenizer, {"parameters": n_params, **state})
    print(f"{done}: epoch {state['epoch']}, step {state['step']}, best epoch {state['best_epoch']} "
          f"(greedy ROUGE-L {state['best_rougeL']:.2f}); model in {out / 'best'}", flush=True)
    return out / "best"


def main(argv: list[str] | None = None) -> int:
    cfg, resume = parse_args(argv)
    train(cfg, resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
