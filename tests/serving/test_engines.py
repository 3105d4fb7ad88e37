"""Both inference backends on a tiny BART (real BART tokenizer): same tokens, same bookkeeping."""

from __future__ import annotations

import bentoml
import pytest

from model_store.onnx_graphs import fp32_weight_matmuls, walk_graphs
from serving.engines import HF_SUBDIR, ONNX_SUBDIR, OnnxEngine, TorchEngine
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


def _job(text, settings):
    from serving.protocol import GenerationJob
    return GenerationJob(text=text, settings=settings, enqueued_at=0.0)


# --- ONNX Runtime's BeamSearch operator (model_store/beam_search.py) against transformers' generate() loop


@pytest.fixture(scope="module")
def loop_engine(tiny_model):
    """The ONNX engine with its BeamSearch graph turned off: optimum's model under transformers' generate()."""
    stored = bentoml.models.get(tiny_model)
    return OnnxEngine(stored.path_of(HF_SUBDIR), tiny_model, threads=1, onnx_dir=stored.path_of(ONNX_SUBDIR),
                      beam_search=False)


def test_import_stores_a_beam_search_graph(tiny_model, engines):
    stored = bentoml.models.get(tiny_model)
    assert stored.info.metadata["onnx"]["beam_search"] is True
    assert "onnx/beam_search.onnx" in stored.info.metadata["sha256"]
    import onnx

    graph = onnx.load(stored.path_of(f"{ONNX_SUBDIR}/beam_search.onnx"))
    assert len(graph.graph.initializer) > 10  # the decoder's weights, shared by both subgraphs
    assert _weights_stored_twice(graph) == []
    _, onnx_engine = engines
    assert onnx_engine.search is not None and onnx_engine.search_info["no_repeat_ngram_size"] == 3


@pytest.mark.parametrize("update", [{}, {"length_penalty": 2.0}, {"min_new_tokens": 12}, {"num_beams": 2}])
def test_beam_search_operator_gives_the_generate_loops_tokens(engines, loop_engine, update):
    _, onnx_engine = engines
    settings = onnx_engine.defaults.model_copy(update=update)
    assert onnx_engine.runs_in_onnx_runtime(settings) and not loop_engine.runs_in_onnx_runtime(settings)
    jobs = onnx_engine.encode([_job(t, settings) for t in DIALOGUES])
    ids, mask, _ = onnx_engine._pad(jobs)  # one padded batch of three lengths
    a = onnx_engine.predict(ids, mask, settings).tolist()
    b = loop_engine.predict(ids, mask, settings).tolist()
    pad = onnx_engine.tokenizer.pad_token_id
    assert [[t for t in row if t != pad] for row in a] == [[t for t in row if t != pad] for row in b]
    if "min_new_tokens" in update:
        assert all(len([t for t in row if t != pad]) >= 12 for row in a)


def test_settings_the_operator_cannot_take_go_through_the_generate_loop(engines):
    torch_engine, onnx_engine = engines
    for update in ({"no_repeat_ngram_size": 2}, {"num_beams": 1}, {"max_new_tokens": 1}, {"max_new_tokens": 2}):
        settings = onnx_engine.defaults.model_copy(update=update)
        assert not onnx_engine.runs_in_onnx_runtime(settings)
        assert ([r.summary for r in onnx_engine.summarize(DIALOGUES, settings)]
                == [r.summary for r in torch_engine.summarize(DIALOGUES, settings)])


def test_summaries_cut_at_max_new_tokens_end_with_the_forced_end_token(engines):
    _, onnx_engine = engines
    settings = onnx_engine.defaults.model_copy(update={"max_new_tokens": 6, "min_new_tokens": 6})
    assert onnx_engine.runs_in_onnx_runtime(settings)
    jobs = onnx_engine.encode([_job(t, settings) for t in DIALOGUES])
    ids, mask, _ = onnx_engine._pad(jobs)
    for row in onnx_engine.predict(ids, mask, settings).tolist():
        assert len(row) == 7 and row[-1] == 2  # start token, 5 tokens, forced end-of-sequence (as transformers)


def test_a_model_stored_without_the_graph_is_served_by_the_generate_loop(tiny_model, engines, tmp_path):
    import shutil

    stored = bentoml.models.get(tiny_model)
    onnx_dir = tmp_path / "onnx"
    shutil.copytree(stored.path_of(ONNX_SUBDIR), onnx_dir, ignore=shutil.ignore_patterns("beam_search.*"))
    engine = OnnxEngine(stored.path_of(HF_SUBDIR), tiny_model, threads=1, onnx_dir=onnx_dir)
    assert engine.search is None and not engine.runs_in_onnx_runtime(engine.defaults)
    _, onnx_engine = engines
    assert ([r.summary for r in engine.summarize(DIALOGUES)]
            == [r.summary for r in onnx_engine.summarize(DIALOGUES)])


def test_shipped_model_beam_search_operator_matches_generate_loop_on_dialogsum(default_model):
    from bench.common import load_dialogues

    stored = bentoml.models.get(default_model)
    hf, onnx = stored.path_of(HF_SUBDIR), stored.path_of(ONNX_SUBDIR)
    fast = OnnxEngine(hf, default_model, threads=1, onnx_dir=onnx)
    loop = OnnxEngine(hf, default_model, threads=1, onnx_dir=onnx, beam_search=False)
    texts = load_dialogues(16, seed=11)
    assert fast.runs_in_onnx_runtime(fast.defaults)
    a, b = fast.summarize(texts), loop.summarize(texts)
    assert [r.summary for r in a] == [r.summary for r in b]
    assert [r.output_tokens for r in a] == [r.output_tokens for r in b]


# --- int8 (model_store/quantize.py): every weight product of the BeamSearch graph, including shared weights


def _weights_stored_twice(model, min_elements: int = 256) -> list[str]:
    """Names of weight tensors (at least ``min_elements`` values) whose bytes another initializer, in any
    graph or subgraph, already holds."""
    import hashlib
    import math

    seen: set[tuple] = set()
    twice = []
    for graph, _ in walk_graphs(model):
        for tensor in graph.initializer:
            if math.prod(tensor.dims) >= min_elements:
                key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(tensor.raw_data).hexdigest())
                if key in seen:
                    twice.append(tensor.name)
                seen.add(key)
    return twice


@pytest.mark.parametrize("keep_output_projection", [False, True])
def test_int8_model_quantizes_the_beam_search_graphs_shared_weights_and_serves(tiny_model, keep_output_projection):
    import onnx

    from model_store.quantize import OUTPUT_PROJECTION, quantize_stored

    name = "tiny-int8-lm-fp32" if keep_output_projection else "tiny-int8"
    tag = quantize_stored(tiny_model, name=name, exclude=(OUTPUT_PROJECTION,) if keep_output_projection else ())
    stored = bentoml.models.get(tag)
    meta = stored.info.metadata["onnx"]
    assert meta["beam_search"] is True and "beam_search.onnx" in meta["quantization"]["graphs"]
    graph = onnx.load(stored.path_of(f"{ONNX_SUBDIR}/beam_search.onnx"))
    fp32_graph = onnx.load(bentoml.models.get(tiny_model).path_of(f"{ONNX_SUBDIR}/beam_search.onnx"))
    assert len(fp32_weight_matmuls(fp32_graph)) > 20  # the check below can fail: fp32 has them all
    left = fp32_weight_matmuls(graph)
    if keep_output_projection:  # the first decoder step (encoder subgraph) and the cached step
        assert sorted(left) == ["d/" + OUTPUT_PROJECTION, "p/" + OUTPUT_PROJECTION]
    else:
        assert left == []
    # the decoder's weights, quantized once for both subgraphs, are stored once, in the outer graph
    assert any(i.data_type == onnx.TensorProto.INT8 for i in graph.graph.initializer)
    assert _weights_stored_twice(graph) == []

    hf, onnx_dir = stored.path_of(HF_SUBDIR), stored.path_of(ONNX_SUBDIR)
    engine = OnnxEngine(hf, tag, threads=1, onnx_dir=onnx_dir)
    assert engine.search is not None and engine.runs_in_onnx_runtime(engine.defaults)
    results = engine.summarize(DIALOGUES)
    assert all(r.output_tokens > 0 and r.backend == "onnx-cpu" for r in results)
    # the int8 BeamSearch graph and the int8 merged decoder under generate() hold the same quantized weights
    loop = OnnxEngine(hf, tag, threads=1, onnx_dir=onnx_dir, beam_search=False)
    assert [r.summary for r in results] == [r.summary for r in loop.summarize(DIALOGUES)]
