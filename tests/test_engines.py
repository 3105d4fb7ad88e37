"""Both inference backends on a tiny BART (real BART tokenizer): same tokens, same bookkeeping."""

from __future__ import annotations

import bentoml
import pytest

from serving.engines import HF_SUBDIR, ONNX_SUBDIR, EncodedJob, OnnxEngine, TorchEngine, group_by_settings_and_length
from serving.protocol import GenerationSettings

DIALOGUES = [
    "#Person1#: Hi, how are you?\n#Person2#: Fine, thanks. And you?",
    "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)",
    "Tom: Are we still meeting at six?\nAnna: Yes, at the cafe next to the station.\nTom: Great, see you.",
]


@pytest.fixture(scope="module")
def engines(tiny_model):
    stored = bentoml.models.get(tiny_model)
    hf, onnx = stored.path_of(HF_SUBDIR), stored.path_of(ONNX_SUBDIR)
    return TorchEngine(hf, tiny_model, threads=1), OnnxEngine(hf, tiny_model, threads=1, onnx_dir=onnx)


def test_greedy_outputs_identical_token_for_token(engines):
    torch_engine, onnx_engine = engines
    settings = GenerationSettings(num_beams=1, max_new_tokens=20, min_new_tokens=20, length_penalty=1.0,
                                  no_repeat_ngram_size=0)
    for text in DIALOGUES:
        jobs = torch_engine.encode([_job(text, settings)])
        ids, mask, _ = torch_engine._pad(jobs)
        a = torch_engine.predict(ids, mask, settings).tolist()
        b = onnx_engine.predict(ids, mask, settings).tolist()
        assert a == b
        assert len(a[0]) >= 20  # min_new_tokens forced a full-length comparison


def test_beam_search_outputs_identical_in_a_padded_batch(engines):
    torch_engine, onnx_engine = engines
    settings = torch_engine.defaults
    a = [r.summary for r in torch_engine.summarize(DIALOGUES, settings)]
    b = [r.summary for r in onnx_engine.summarize(DIALOGUES, settings)]
    assert a == b
    assert all(a)


def test_results_report_tokens_truncation_and_backend(engines):
    torch_engine, onnx_engine = engines
    long_text = "Ann: " + "word " * 3000
    for engine, backend in ((torch_engine, "torch-cpu"), (onnx_engine, "onnx-cpu")):
        short, long = engine.summarize([DIALOGUES[0], long_text])
        assert short.backend == long.backend == backend
        assert not short.truncated and long.truncated
        assert long.input_tokens == engine.context == 1024
        assert short.input_tokens == len(engine.tokenizer(DIALOGUES[0])["input_ids"])
        assert 0 < short.output_tokens <= engine.defaults.max_new_tokens


def test_requests_are_generated_with_their_own_settings(engines):
    torch_engine, _ = engines
    base = torch_engine.defaults
    short = base.model_copy(update={"max_new_tokens": 3, "min_new_tokens": 0, "num_beams": 1})
    jobs = [_job(DIALOGUES[0], base), _job(DIALOGUES[0], short), _job(DIALOGUES[1], base)]
    results = torch_engine.generate(jobs)
    assert results[1].output_tokens <= 3
    assert results[0].output_tokens > 3 and results[2].output_tokens > 3
    assert results[1].batch_size == 1  # never batched with the other settings


def test_grouping_splits_by_settings_and_bounds_padding():
    a = GenerationSettings(num_beams=4, max_new_tokens=64, min_new_tokens=0, length_penalty=1.0, no_repeat_ngram_size=3)
    b = a.model_copy(update={"num_beams": 1})
    jobs = [EncodedJob(i, [0] * n, False, s, 0.0)
            for i, (n, s) in enumerate([(10, a), (11, a), (12, b), (100, a), (101, a), (10, b)])]
    groups = group_by_settings_and_length(jobs, max_padding_share=0.25)
    for group in groups:
        assert len({j.settings for j in group}) == 1
        longest = max(len(j.ids) for j in group)
        assert 1 - sum(len(j.ids) for j in group) / (longest * len(group)) <= 0.25
    assert sorted(j.index for g in groups for j in g) == list(range(6))
    assert len(groups) == 3  # {10, 11}, {100, 101} with settings a; {10, 12} with settings b


def _job(text, settings):
    from serving.protocol import GenerationJob
    return GenerationJob(text=text, settings=settings, enqueued_at=0.0)
