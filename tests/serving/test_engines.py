"""Both inference engines on a tiny BART (real BART tokenizer): the ONNX Runtime engine (BeamSearch graph, no
PyTorch) gives transformers' tokens for every generation setting, and both keep the same books."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bentoml
import pytest

from model_store.onnx_graphs import fp32_weight_matmuls, walk_graphs
from serving.engines import HF_SUBDIR, ONNX_SUBDIR, OnnxEngine, TorchEngine
from serving.protocol import GenerationJob

DIALOGUES = [
    "#Person1#: Hi, how are you?\n#Person2#: Fine, thanks. And you?",
    "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)",
    "Tom: Are we still meeting at six?\nAnna: Yes, at the cafe next to the station.\nTom: Great, see you.",
]
# Each family changes the tiny model's defaults (4 beams, n-gram 3, 2 to 24 new tokens, length penalty 1).
FAMILIES = {
    "defaults": {},
    "greedy": {"num_beams": 1},
    "greedy, n-gram 0": {"num_beams": 1, "no_repeat_ngram_size": 0},
    "2 beams": {"num_beams": 2},
    "n-gram 0": {"no_repeat_ngram_size": 0},
    "n-gram 1": {"no_repeat_ngram_size": 1, "min_new_tokens": 10},
    "n-gram 2": {"no_repeat_ngram_size": 2},
    "length penalty 0": {"length_penalty": 0.0},
    "length penalty 2": {"length_penalty": 2.0},
    "min 12 new tokens": {"min_new_tokens": 12},
    "min = max = 6": {"max_new_tokens": 6, "min_new_tokens": 6},
    "max 1": {"max_new_tokens": 1, "min_new_tokens": 0},
    "max 1, min 1, greedy": {"max_new_tokens": 1, "min_new_tokens": 1, "num_beams": 1},
    "max 2": {"max_new_tokens": 2, "min_new_tokens": 0},
    "max 2, min 2, greedy": {"max_new_tokens": 2, "min_new_tokens": 2, "num_beams": 1},
    "max 3": {"max_new_tokens": 3, "min_new_tokens": 0},
    "max 3, greedy, length penalty 3": {"max_new_tokens": 3, "min_new_tokens": 0, "num_beams": 1,
                                        "length_penalty": 3.0},
}
END_TOKEN_BIAS = 0.33  # as tests/serving/test_service_generation.py: ending becomes a close call


def _job(text, settings):
    return GenerationJob(text=text, settings=settings, enqueued_at=0.0)


def tokens(engine, settings, texts=DIALOGUES) -> list[list[int]]:
    """What ``predict`` returns for one padded batch of ``texts`` (three lengths)."""
    ids, mask, _ = engine.pad(engine.encode([_job(t, settings) for t in texts]))
    return engine.predict(ids, mask, settings).tolist()


def settings_of(engine, update):
    return engine.defaults.model_copy(update=update)


@pytest.fixture(scope="module")
def engines(tiny_model):
    stored = bentoml.models.get(tiny_model)
    hf, onnx = stored.path_of(HF_SUBDIR), stored.path_of(ONNX_SUBDIR)
    return TorchEngine(hf, tiny_model, threads=1), OnnxEngine(hf, tiny_model, threads=1, onnx_dir=onnx)


@pytest.mark.parametrize("update", FAMILIES.values(), ids=FAMILIES)
def test_onnx_engine_gives_transformers_tokens(engines, update):
    torch_engine, onnx_engine = engines
    settings = settings_of(torch_engine, update)
    expected = tokens(torch_engine, settings)
    assert tokens(onnx_engine, settings) == expected
    assert all(len(row) == settings.max_new_tokens + 1 for row in expected)  # random weights never end early


# --- a tiny BART that ends its summaries early, with and without BART's forced first and last tokens


@pytest.fixture(scope="module")
def terse_dir(tiny_model_dir, bentoml_home, tmp_path_factory):
    """The stored layout (hf/ + onnx/) of the tiny BART biased towards its end token."""
    from transformers import BartForConditionalGeneration

    from model_store.store import import_model

    model_dir = tmp_path_factory.mktemp("terse") / "tiny-bart-terse"
    shutil.copytree(tiny_model_dir, model_dir)
    model = BartForConditionalGeneration.from_pretrained(model_dir)
    model.final_logits_bias[0, model.config.eos_token_id] = END_TOKEN_BIAS
    model.save_pretrained(model_dir, safe_serialization=True)
    return bentoml.models.get(import_model(str(model_dir), "tiny-bart-terse-engines").tag).path


def variant(terse_dir, tmp_path_factory, without: tuple[str, ...]):
    """A copy of the terse model whose generation config lacks ``without`` (the BeamSearch graph is the same:
    BART's forced tokens are the engine's business), with both engines."""
    root = tmp_path_factory.mktemp("variant") / "model"
    shutil.copytree(terse_dir, root)
    for path in (root / HF_SUBDIR / "generation_config.json", root / ONNX_SUBDIR / "beam_search.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), **{key: None for key in without}}))
    return (TorchEngine(root / HF_SUBDIR, "terse", threads=1),
            OnnxEngine(root / HF_SUBDIR, "terse", threads=1, onnx_dir=root / ONNX_SUBDIR))


@pytest.fixture(scope="module")
def terse(terse_dir, tmp_path_factory):
    return variant(terse_dir, tmp_path_factory, ())


@pytest.fixture(scope="module")
def terse_without_first_token(terse_dir, tmp_path_factory):
    return variant(terse_dir, tmp_path_factory, ("forced_bos_token_id",))


@pytest.fixture(scope="module")
def terse_without_forced_tokens(terse_dir, tmp_path_factory):
    return variant(terse_dir, tmp_path_factory, ("forced_bos_token_id", "forced_eos_token_id"))


@pytest.mark.parametrize("update", FAMILIES.values(), ids=FAMILIES)
def test_summaries_that_end_early_are_transformers_tokens(terse, update):
    torch_engine, onnx_engine = terse
    settings = settings_of(torch_engine, update)
    assert tokens(onnx_engine, settings) == tokens(torch_engine, settings)


def test_the_forced_first_token_does_not_count_against_a_summary(terse):
    # The operator's prefix mask alone keeps the forced token's own log-probability in every hypothesis;
    # transformers gives it 0. Here that decides between a short and a long summary.
    torch_engine, onnx_engine = terse
    expected = tokens(torch_engine, torch_engine.defaults)
    assert tokens(onnx_engine, onnx_engine.defaults) == expected
    assert all(len(row) < 8 for row in expected)


# one token chosen, BART's end forced, no forced first token, several beams: see below
ONE_CHOSEN_TOKEN_WITH_BEAMS = {"max_new_tokens": 2, "min_new_tokens": 0}


@pytest.mark.parametrize("update", [u for u in FAMILIES.values() if u != ONE_CHOSEN_TOKEN_WITH_BEAMS],
                         ids=[k for k, u in FAMILIES.items() if u != ONE_CHOSEN_TOKEN_WITH_BEAMS])
def test_without_a_forced_first_token_summaries_are_transformers_tokens(terse_without_first_token, update):
    torch_engine, onnx_engine = terse_without_first_token
    settings = settings_of(torch_engine, update)
    assert tokens(onnx_engine, settings) == tokens(torch_engine, settings)


def test_one_chosen_token_is_greedy_searchs(terse_without_first_token):
    """max_new_tokens 2 with a forced end leaves one token to choose, too few steps for the operator: the engine
    takes greedy search's. transformers' beam search differs where the end token at step 1 and the forced
    end at step 2 compete under the length penalty, as on this model (a model with BART's forced first token
    has nothing to choose there)."""
    torch_engine, onnx_engine = terse_without_first_token
    settings = settings_of(torch_engine, ONE_CHOSEN_TOKEN_WITH_BEAMS)
    greedy = settings.model_copy(update={"num_beams": 1})
    assert tokens(onnx_engine, settings) == tokens(torch_engine, greedy) == tokens(onnx_engine, greedy)
    assert all(len(row) <= 3 for row in tokens(onnx_engine, settings))


@pytest.mark.parametrize("update", [u for u in FAMILIES.values() if u.get("num_beams") == 1]
                         + [{"max_new_tokens": 1, "min_new_tokens": 0}],
                         ids=[k for k, u in FAMILIES.items() if u.get("num_beams") == 1] + ["max 1"])
def test_without_forced_tokens_greedy_and_one_token_summaries_are_transformers_tokens(
        terse_without_forced_tokens, update):
    # With several beams and no forced end, a hypothesis cut at max_new_tokens is ranked with one token more
    # in ONNX Runtime (its start token) than in transformers (as with the engine before): not compared.
    torch_engine, onnx_engine = terse_without_forced_tokens
    settings = settings_of(torch_engine, update)
    assert tokens(onnx_engine, settings) == tokens(torch_engine, settings)


# --- bookkeeping, sessions, stored graphs


def test_results_report_tokens_truncation_and_backend(engines):
    torch_engine, onnx_engine = engines
    long_text = "Ann: " + "word " * 3000
    for engine, backend in ((torch_engine, "torch-cpu"), (onnx_engine, "onnx-cpu")):
        short, long = engine.summarize([DIALOGUES[0], long_text])
        assert short.backend == long.backend == backend
        assert not short.truncated and long.truncated
        assert long.input_tokens == engine.context == 1024
        assert short.input_tokens == len(engine.tokenizer.encode([DIALOGUES[0]])[0])
        assert 0 < short.output_tokens <= engine.defaults.max_new_tokens


def test_requests_are_generated_with_their_own_settings(engines):
    for engine in engines:
        base = engine.defaults
        short = base.model_copy(update={"max_new_tokens": 3, "min_new_tokens": 0, "num_beams": 1})
        results = engine.generate([_job(DIALOGUES[0], base), _job(DIALOGUES[0], short), _job(DIALOGUES[1], base)])
        assert results[1].output_tokens <= 3
        assert results[0].output_tokens > 3 and results[2].output_tokens > 3
        assert results[1].batch_size == 1  # never batched with the other settings


def test_other_ngram_sizes_share_one_weights_file_and_few_sessions(tiny_model, tmp_path, monkeypatch):
    import onnx

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # nothing may be written there: sessions map the stored file
    stored = bentoml.models.get(tiny_model)
    engine = OnnxEngine(stored.path_of(HF_SUBDIR), tiny_model, threads=1, onnx_dir=stored.path_of(ONNX_SUBDIR),
                        max_extra_searches=1)
    for size in (0, 2, 3, 2):
        engine.summarize(DIALOGUES[:1], engine.defaults.model_copy(update={"no_repeat_ngram_size": size}))
    assert engine.searches.graph_ngram == 3 and engine.searches.extra_sizes == [2]  # 0 was dropped for 2
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size > 1024]
    assert written == []  # (a library leaves a 51-byte session id there)
    for size in (0, 2, 3):  # every weight of each session's graph (and subgraphs) is read from the stored file
        model = onnx.load_from_string(engine.searches.graph_bytes(size))
        assert _search_ngram(model) == size
        inline = [t.name for graph, _ in walk_graphs(model) for t in graph.initializer
                  if not t.external_data and len(t.raw_data) >= 1024 and t.name != "forced_first_token_bias"]
        files = {e.value for graph, _ in walk_graphs(model) for t in graph.initializer for e in t.external_data
                 if e.key == "location"}
        assert inline == [] and files == {"beam_search.weights"}


def _search_ngram(model) -> int:
    node = next(n for n in model.graph.node if n.op_type == "BeamSearch")
    return next(a.i for a in node.attribute if a.name == "no_repeat_ngram_size")


def test_import_stores_a_beam_search_graph(tiny_model, engines):
    stored = bentoml.models.get(tiny_model)
    assert stored.info.metadata["onnx"]["beam_search"] is True
    assert "onnx/beam_search.onnx" in stored.info.metadata["sha256"]
    import onnx

    graph = onnx.load(stored.path_of(f"{ONNX_SUBDIR}/beam_search.onnx"))
    assert len(graph.graph.initializer) > 10  # the decoder's weights, shared by both subgraphs
    assert _weights_stored_twice(graph) == []
    assert engines[1].searches.graph_ngram == engines[1].search_info["no_repeat_ngram_size"] == 3


def test_a_model_stored_without_the_graph_is_refused_with_the_import_command(tiny_model, tmp_path):
    stored = bentoml.models.get(tiny_model)
    onnx_dir = tmp_path / "onnx"
    shutil.copytree(stored.path_of(ONNX_SUBDIR), onnx_dir, ignore=shutil.ignore_patterns("beam_search.*"))
    with pytest.raises(FileNotFoundError, match="beam_search.onnx .*python -m model_store import"):
        OnnxEngine(stored.path_of(HF_SUBDIR), tiny_model, threads=1, onnx_dir=onnx_dir)


def test_shipped_model_gives_transformers_summaries_on_dialogsum(default_model):
    from bench.common import load_dialogues

    stored = bentoml.models.get(default_model)
    hf, onnx = stored.path_of(HF_SUBDIR), stored.path_of(ONNX_SUBDIR)
    texts = load_dialogues(16, seed=11)
    a = OnnxEngine(hf, default_model, threads=1, onnx_dir=onnx).summarize(texts)
    b = TorchEngine(hf, default_model, threads=1).summarize(texts)
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

    engine = OnnxEngine(stored.path_of(HF_SUBDIR), tag, threads=1, onnx_dir=stored.path_of(ONNX_SUBDIR))
    for update in ({}, {"num_beams": 1, "no_repeat_ngram_size": 0}, {"max_new_tokens": 4}):
        results = engine.summarize(DIALOGUES, engine.defaults.model_copy(update=update))
        assert all(r.output_tokens > 0 and r.backend == "onnx-cpu" for r in results)


def _mapped_and_resident(path) -> tuple[int, int]:
    """Bytes of this process's mappings of ``path``, and how many of them are in memory (/proc/self/smaps)."""
    import re

    mapped = resident = 0
    current = False
    for line in open("/proc/self/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            current = line.rstrip().endswith(str(path))
        elif current and line.startswith("Size:"):
            mapped += int(line.split()[1]) * 1024
        elif current and line.startswith("Rss:"):
            resident += int(line.split()[1]) * 1024
    return mapped, resident


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux only")
def test_prepacking_hands_the_weights_file_pages_back_and_serves(tiny_model, tmp_path):
    from serving.search_sessions import release_file_pages

    # a copy of the model that no other engine maps (the kernel reclaims only pages one process maps once)
    stored = bentoml.models.get(tiny_model)
    for part in (HF_SUBDIR, ONNX_SUBDIR):
        shutil.copytree(stored.path_of(part), tmp_path / part)
    weights = (tmp_path / ONNX_SUBDIR / "beam_search.weights").resolve()
    engine = OnnxEngine(tmp_path / HF_SUBDIR, tiny_model, threads=1, onnx_dir=tmp_path / ONNX_SUBDIR)
    mapped, resident = _mapped_and_resident(weights)
    assert mapped >= weights.stat().st_size * 0.9  # ONNX Runtime maps the stored file rather than reading it
    assert resident < mapped * 0.2, (mapped, resident)  # what prepacking read was handed back
    before = engine.summarize(DIALOGUES[:2])
    assert release_file_pages(weights) >= mapped  # pages read again come back from the file: same summaries
    assert [r.summary for r in engine.summarize(DIALOGUES[:2])] == [r.summary for r in before]
