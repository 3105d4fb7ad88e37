"""What every inference engine shares: tokenizing, grouping, padding and bookkeeping, on numpy alone.

An engine turns a batch of ``GenerationJob`` into ``GenerationResult`` through small named hooks:

    encode   (a model trained with speaker placeholders reads #PersonN# for names: serving/speakers.py)
             tokenize, cut to the model's context, note truncation
    group    split by generation settings (a job is never generated with another's settings), then by
             length so that a generation call pads little
    predict  one generation call per group (backend specific): padded int64 ids and mask in, the
             generated ids out, as transformers' ``generate()`` returns them (start token first, padded)
    decode   token ids -> text and counts (and the speakers' names back in place of their placeholders)

Nothing here imports PyTorch or transformers: the ONNX Runtime engine serves without them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.model_config import context_length, default_settings, generation_config
from serving.observers import NO_OBSERVER, EngineObserver, GenerationCall, Isolated
from serving.protocol import EngineName, GenerationJob, GenerationResult, GenerationSettings
from serving.speakers import SpeakerNames, uses_placeholders
from serving.tokenization import ModelTokenizer


@dataclass
class EncodedJob:
    index: int
    ids: list[int]
    truncated: bool
    settings: GenerationSettings
    enqueued_at: float


def group_by_settings_and_length(jobs: Sequence[EncodedJob], max_padding_share: float = 0.25,
                                 max_group_tokens: int = 32_768) -> list[list[EncodedJob]]:
    """Groups for generation: one settings value per group, similar lengths within a group.

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
        self.observer = Isolated(observer) if observer is not None else NO_OBSERVER
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").exists():
            raise FileNotFoundError(f"{self.model_dir} is not a Hugging Face model directory (no config.json)")
        self.model_tag = model_tag
        self.tokenizer = ModelTokenizer(self.model_dir)
        self.context = context_length(self.model_dir)
        self.defaults = default_settings(self.model_dir)
        self.speaker_placeholders = uses_placeholders(generation_config(self.model_dir))

    # -- hooks -------------------------------------------------------------------------------------

    def speakers(self, jobs: Sequence[GenerationJob]) -> list[SpeakerNames]:
        """Each job's speaker names (none unless the model was trained with placeholders)."""
        return [SpeakerNames.of(job.text) if self.speaker_placeholders else SpeakerNames() for job in jobs]

    def encode(self, jobs: Sequence[GenerationJob], speakers: Sequence[SpeakerNames] | None = None) -> list[EncodedJob]:
        encoded = []
        eos = self.tokenizer.eos_token_id
        texts = [names.hide(job.text) for job, names in zip(jobs, speakers)] if speakers else [j.text for j in jobs]
        for i, (job, ids) in enumerate(zip(jobs, self.tokenizer.encode(texts))):
            truncated = len(ids) > self.context
            if truncated:
                ids = ids[: self.context - 1] + [eos]
            encoded.append(EncodedJob(i, ids, truncated, job.settings, job.enqueued_at))
        return encoded

    def group(self, jobs: Sequence[EncodedJob]) -> list[list[EncodedJob]]:
        return group_by_settings_and_length(jobs)

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray, settings: GenerationSettings) -> np.ndarray:
        raise NotImplementedError

    def decode(self, output_ids: np.ndarray) -> list[tuple[str, int]]:
        rows = np.asarray(output_ids).tolist()
        texts = self.tokenizer.decode(rows)
        special = self.tokenizer.special_ids
        counts = [sum(1 for t in row if t not in special) for row in rows]
        return [(text.strip(), n) for text, n in zip(texts, counts)]

    # -- the batch path ----------------------------------------------------------------------------

    def generate(self, jobs: Sequence[GenerationJob]) -> list[GenerationResult]:
        started = time.time()
        results: list[GenerationResult | None] = [None] * len(jobs)
        speakers = self.speakers(jobs)
        for group in self.group(self.encode(jobs, speakers)):
            input_ids, attention_mask, padding_share = self.pad(group)
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
                    summary=speakers[job.index].restore(text), input_tokens=len(job.ids), output_tokens=n_out, truncated=job.truncated,
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

    def pad(self, group: Sequence[EncodedJob]) -> tuple[np.ndarray, np.ndarray, float]:
        """(input ids, attention mask, padding share) of a group: int64, padded on the right."""
        longest = max(len(j.ids) for j in group)
        input_ids = np.full((len(group), longest), self.tokenizer.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(group), longest), dtype=np.int64)
        for row, job in enumerate(group):
            input_ids[row, : len(job.ids)] = job.ids
            attention_mask[row, : len(job.ids)] = 1
        padding_share = 1.0 - sum(len(j.ids) for j in group) / float(longest * len(group))
        return input_ids, attention_mask, padding_share
