"""Inference engines: the same seq2seq generation on PyTorch and on ONNX Runtime.

An engine turns a batch of ``GenerationJob`` into ``GenerationResult`` through small named hooks:

    encode   tokenize, cut to the model's context, note truncation
    group    split by generation settings (a job is never generated with another's settings), then by
             length so that a generate() call pads little
    predict  one ``generate()`` call per group (backend specific)
    decode   token ids -> text and counts

The service code and the evaluation suite both call ``Engine.generate``; what is scored is what is served.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from model_store.layout import HF_SUBDIR, ONNX_SUBDIR  # noqa: F401 - also imported from here by callers
from serving.observers import NO_OBSERVER, EngineObserver, GenerationCall, Isolated
from serving.protocol import EngineName, GenerationJob, GenerationResult, GenerationSettings

logger = logging.getLogger(__name__)



@dataclass
class EncodedJob:
    index: int
    ids: list[int]
    truncated: bool
    settings: GenerationSettings
    enqueued_at: float


def default_settings(model_dir: str | os.PathLike) -> GenerationSettings:
    """The model's own generation defaults (its generation_config.json), production values otherwise."""
    from transformers import GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        gen = GenerationConfig()
    max_new = gen.max_new_tokens or 128
    return GenerationSettings(
        num_beams=gen.num_beams if gen.num_beams and gen.num_beams > 1 else 4,
        max_new_tokens=max_new,
        min_new_tokens=min(gen.min_new_tokens or 0, max_new),
        length_penalty=float(gen.length_penalty if gen.length_penalty is not None else 1.0),
        no_repeat_ngram_size=gen.no_repeat_ngram_size if gen.no_repeat_ngram_size is not None else 3,
    )


def context_length(model_dir: str | os.PathLike) -> int:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    return int(getattr(config, "max_position_embeddings", 1024))


def group_by_settings_and_length(jobs: Sequence[EncodedJob], max_padding_share: float = 0.25,
                                 max_group_tokens: int = 32_768) -> list[list[EncodedJob]]:
    """Groups for generate(): one settings value per group, similar lengths within a group.

    Jobs are sorted by length; a group is cut when adding the next job would make more than
    ``max_padding_share`` of the padded batch padding, or exceed ``max_group_tokens`` padded tokens
    (which bounds beam-search memory on long inputs).
    """
    by_settings: dict[GenerationSettings, list[EncodedJob]] = {}
    for job in jobs:
        by_settings.setdefault(job.settings, []).append(job)
    groups: list[list[EncodedJob]] = []
    for same in by_settings.values():
        same.sort(key=lambda j: len(j.ids))
        current: list[EncodedJob] = []
        real = 0
        for job in same:
            n = len(job.ids)
            padded = n * (len(current) + 1)  # sorted ascending: the new job is the longest
            share = 1.0 - (real + n) / padded
            if current and (share > max_padding_share or padded * job.settings.num_beams > max_group_tokens):
                groups.append(current)
                current, real = [], 0
            current.append(job)
            real += n
        if current:
            groups.append(current)
    return groups


class Engine:
    """Base class: tokenizer handling, grouping and bookkeeping; subclasses load a model and predict."""

    engine: EngineName  # set by each subclass (PyTorch's once its device is known)

    def __init__(self, model_dir: str | os.PathLike, model_tag: str = "local",
                 observer: EngineObserver | None = None) -> None:
        from transformers import AutoTokenizer

        self.observer = Isolated(observer) if observer is not None else NO_OBSERVER
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").exists():
            raise FileNotFoundError(f"{self.model_dir} is not a Hugging Face model directory (no config.json)")
        self.model_tag = model_tag
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.context = context_length(self.model_dir)
        self.defaults = default_settings(self.model_dir)

    # -- hooks -------------------------------------------------------------------------------------

    def encode(self, jobs: Sequence[GenerationJob]) -> list[EncodedJob]:
        ids_list = self.tokenizer([job.text for job in jobs], add_special_tokens=True, verbose=False)["input_ids"]
        encoded = []
        eos = self.tokenizer.eos_token_id
        for i, (job, ids) in enumerate(zip(jobs, ids_list)):
            truncated = len(ids) > self.context
            if truncated:
                ids = ids[: self.context - 1] + [eos]
            encoded.append(EncodedJob(i, ids, truncated, job.settings, job.enqueued_at))
        return encoded

    def group(self, jobs: Sequence[EncodedJob]) -> list[list[EncodedJob]]:
        return group_by_settings_and_length(jobs)

    def predict(self, input_ids: Any, attention_mask: Any, settings: GenerationSettings) -> Any:
        raise NotImplementedError

    def decode(self, output_ids: Any) -> list[tuple[str, int]]:
        rows = output_ids.tolist()
        texts = self.tokenizer.batch_decode(rows, skip_special_tokens=True)
        special = set(self.tokenizer.all_special_ids)
        counts = [sum(1 for t in row if t not in special) for row in rows]
        return [(text.strip(), n) for text, n in zip(texts, counts)]

    # -- the batch path ----------------------------------------------------------------------------

    def generate(self, jobs: Sequence[GenerationJob]) -> list[GenerationResult]:
        started = time.time()
        results: list[GenerationResult | None] = [None] * len(jobs)
        for group in self.group(self.encode(jobs)):
            input_ids, attention_mask, padding_share = self._pad(group)
            call = GenerationCall(self.engine, self.model_tag, [jobs[j.index] for j in group],
                                  [len(j.ids) for j in group], group[0].settings, padding_share)
            token = self.observer.generation_started(call)  # spans and batch metrics, when observed
            try:
                t0 = time.perf_counter()
                output_ids = self.predict(input_ids, attention_mask, group[0].settings)
                generate_ms = (time.perf_counter() - t0) * 1000.0
                decoded = self.decode(output_ids)
            except BaseException as exc:
                self.observer.generation_finished(token, call, None, exc)
                raise
            self.observer.generation_finished(token, call, [n_out for _, n_out in decoded], None)
            for job, (text, n_out) in zip(group, decoded):
                results[job.index] = GenerationResult(
                    summary=text, input_tokens=len(job.ids), output_tokens=n_out, truncated=job.truncated,
                    backend=self.engine, model=self.model_tag, batch_size=len(group),
                    queue_wait_ms=max(0.0, (started - job.enqueued_at) * 1000.0),
                    generate_ms=generate_ms, padding_share=padding_share,
                )
        return results  # type: ignore[return-value]

    def summarize(self, texts: Sequence[str], settings: GenerationSettings | None = None) -> list[GenerationResult]:
        """Convenience for evaluation and benchmarks: plain texts in, results out."""
        chosen = settings or self.defaults
        now = time.time()
        return self.generate([GenerationJob(text=t, settings=chosen, enqueued_at=now) for t in texts])

    def _pad(self, group: Sequence[EncodedJob]):
        import torch

        longest = max(len(j.ids) for j in group)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(group), longest), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(group), longest), dtype=torch.long)
        for row, job in enumerate(group):
            input_ids[row, : len(job.ids)] = torch.tensor(job.ids, dtype=torch.long)
            attention_mask[row, : len(job.ids)] = 1
        padding_share = 1.0 - sum(len(j.ids) for j in group) / float(longest * len(group))
        return input_ids, attention_mask, padding_share

    @staticmethod
    def generate_kwargs(settings: GenerationSettings) -> dict[str, Any]:
        return dict(
            num_beams=settings.num_beams,
            max_new_tokens=settings.max_new_tokens,
            min_new_tokens=settings.min_new_tokens,
            length_penalty=settings.length_penalty,
            no_repeat_ngram_size=settings.no_repeat_ngram_size,
            early_stopping=settings.num_beams > 1,
            do_sample=False,
        )


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

    def predict(self, input_ids, attention_mask, settings):
        import torch

        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                                      **self.generate_kwargs(settings))
        return out.cpu()


def session_options(ort, threads: int, spinning: bool, stop_spinning_after_run: bool = False):
    """ONNX Runtime options of the engine's sessions (also bench.profile's, so it profiles the same)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if spinning and stop_spinning_after_run:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


# ONNX Runtime's BeamSearch refuses a max_length that does not exceed the decoder's start (1 token) plus,
# with BART's forced first token, one more step ("max_length shall be greater than input sequence length");
# such short summaries take the generate() loop.
MIN_SEARCH_NEW_TOKENS = 3


class OnnxEngine(Engine):
    """ONNX Runtime on CPU: optimum's export (encoder + merged decoder with its key/value cache).

    Speed (measured by ``python -m bench``, item "onnx_vs_torch"): ``generate()`` runs the beam search in
    PyTorch around the ONNX Runtime calls (log-softmax over the vocabulary, top-k, reordering the key/value
    cache by beam). Left at PyTorch's default, its thread pool (a thread per core, spin-waiting between
    ops) competes with ONNX Runtime's pool for the same cores; for this small model that cost several
    times the CPU of the model itself. So: the PyTorch side of generate() runs on ``torch_threads``
    threads (1), ONNX Runtime's workers do not spin-wait unless ``spinning`` is set, and the per-step
    ``inspect.signature`` calls of transformers' logits-processor list are made once per processor.

    That loop still cost a third of a summary, in Python. So when the stored model carries
    ``onnx/beam_search.onnx`` (model_store/beam_search.py: the same encoder and decoder inside ONNX
    Runtime's BeamSearch operator), beam search with the model's n-gram rule runs there, in C++: the
    summaries are generate()'s but for near-ties between beams (7 of the eval suite's 1,318 differ:
    float rounding); other settings (one beam, another n-gram size) and older stored models
    take generate(). ``beam_search=False`` turns the operator off. Its session's workers spin-wait during
    a run (``search_spinning``) and stop when it returns.
    """

    engine = EngineName.ONNX_CPU

    def __init__(self, model_dir: str | os.PathLike, model_tag: str = "local", threads: int = 0,
                 onnx_dir: str | os.PathLike | None = None, spinning: bool = False,
                 torch_threads: int = 1, beam_search: bool = True, search_spinning: bool = True,
                 observer: EngineObserver | None = None) -> None:
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSeq2SeqLM

        super().__init__(model_dir, model_tag, observer)
        onnx_path = Path(onnx_dir) if onnx_dir else self.model_dir.parent / ONNX_SUBDIR
        if not (onnx_path / "encoder_model.onnx").exists():
            raise FileNotFoundError(f"no ONNX export at {onnx_path}: re-import the model with "
                                    "`python -m model_store import` (it exports with optimum)")
        options = session_options(ort, threads or (os.cpu_count() or 1), spinning)
        self.torch_threads = torch_threads
        self.model = ORTModelForSeq2SeqLM.from_pretrained(onnx_path, provider="CPUExecutionProvider",
                                                          session_options=options, use_cache=True)
        self._cache_processor_signatures(self.model)
        # The whole beam search in ONNX Runtime (model_store/beam_search.py), when the model has it.
        from model_store.beam_search import GRAPH_FILE, read_info

        self.search_info = read_info(onnx_path) if beam_search else None
        self.search = None
        if self.search_info:
            # One run is the whole search: hundreds of small operators per decoding step, each split across
            # the pool. Waking a sleeping worker for each costs more than the operator (measured: 25 % of a
            # summary); spin-waiting inside the run, and stopping as soon as the run returns (no Python loop
            # runs between steps here to compete with), does not.
            search_options = session_options(ort, options.intra_op_num_threads, spinning=search_spinning,
                                             stop_spinning_after_run=True)
            self.search = ort.InferenceSession(str(onnx_path / GRAPH_FILE), search_options,
                                               providers=["CPUExecutionProvider"])

    def runs_in_onnx_runtime(self, settings: GenerationSettings) -> bool:
        """Whether ONNX Runtime's BeamSearch operator serves these settings (else transformers' generate()):
        its n-gram rule is fixed when the graph is built, one beam is greedy search in transformers, and it
        cannot stop within two tokens."""
        return (self.search is not None and settings.num_beams > 1
                and settings.max_new_tokens >= MIN_SEARCH_NEW_TOKENS
                and settings.no_repeat_ngram_size == self.search_info["no_repeat_ngram_size"])

    def predict(self, input_ids, attention_mask, settings):
        if self.runs_in_onnx_runtime(settings):
            return self._beam_search(input_ids, attention_mask, settings)
        return self._generate(input_ids, attention_mask, settings)

    def _beam_search(self, input_ids, attention_mask, settings):
        import numpy as np
        import torch

        info = self.search_info
        forced_eos = info["forced_eos_token_id"]
        # transformers counts new tokens; the operator counts the decoder sequence with its start token.
        # With a forced end token, transformers' last step can only be that token: the operator stops one
        # step earlier and the end token is appended below, so both rank the beams on the same tokens.
        max_length = settings.max_new_tokens + (0 if forced_eos is not None else 1)
        feeds = {"input_ids": input_ids.numpy().astype(np.int32),
                 "attention_mask": attention_mask.numpy().astype(np.int32),
                 "max_length": np.array([max_length], np.int32),
                 "min_length": np.array([min(settings.min_new_tokens + 1, max_length)], np.int32),
                 "num_beams": np.array([settings.num_beams], np.int32),
                 "num_return_sequences": np.array([1], np.int32),
                 "length_penalty": np.array([settings.length_penalty], np.float32),
                 "repetition_penalty": np.array([1.0], np.float32)}
        if info["forced_bos_token_id"] is not None:  # transformers forces the first token; the mask does
            mask = np.zeros((input_ids.shape[0], info["vocab_size"]), np.int32)
            mask[:, info["forced_bos_token_id"]] = 1
            feeds["prefix_vocab_mask"] = mask
        sequences = self.search.run(None, feeds)[0][:, 0, :]
        if forced_eos is not None and sequences.shape[1] == max_length:
            unfinished = ~(sequences[:, 1:] == info["eos_token_id"]).any(axis=1)
            if unfinished.any():
                end = np.full((sequences.shape[0], 1), info["pad_token_id"], sequences.dtype)
                end[unfinished, 0] = forced_eos
                sequences = np.concatenate([sequences, end], axis=1)
        return torch.from_numpy(sequences.astype(np.int64))

    def _generate(self, input_ids, attention_mask, settings):
        import torch

        before = torch.get_num_threads()
        if self.torch_threads and self.torch_threads != before:
            torch.set_num_threads(self.torch_threads)
        try:
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                       **self.generate_kwargs(settings))
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    @staticmethod
    def _cache_processor_signatures(model) -> None:
        """Make generate() build logits-processor lists that inspect each processor's signature once."""
        import inspect

        from transformers.generation.logits_process import LogitsProcessorList

        class CachedSignatureList(LogitsProcessorList):
            extra_args: dict = {}

            def __call__(self, input_ids, scores, **kwargs):
                for processor in self:
                    key = type(processor)
                    if key not in self.extra_args:
                        self.extra_args[key] = list(inspect.signature(processor.__call__).parameters)[2:]
                    needed = self.extra_args[key]
                    if needed:
                        if not all(arg in kwargs for arg in needed):
                            raise ValueError(f"{key} needs the parameters {needed}")
                        scores = processor(input_ids, scores, **kwargs)
                    else:
                        scores = processor(input_ids, scores)
                return scores

        build = model._get_logits_processor
        model._get_logits_processor = lambda *args, **kwargs: CachedSignatureList(build(*args, **kwargs))
