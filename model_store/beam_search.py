"""The whole beam search in one ONNX Runtime graph: the ``com.microsoft.BeamSearch`` operator around the
encoder and decoder that optimum exports.

Why: on a CPU, transformers' ``generate()`` spends about a third of a summary in its Python loop around the
model (beam bookkeeping, logits processors, cache reordering), the same for PyTorch and ONNX Runtime
(``python -m bench``, item 4). ONNX Runtime's BeamSearch operator runs that loop in C++, and the ONNX engine
runs every generation setting in it, without PyTorch (serving/onnx_engine.py: BART's forced first and last
tokens as transformers has them; tests/serving/test_engines.py and ``python -m bench.onnx_parity`` compare
its tokens with transformers').

ONNX Runtime's own converter (``onnxruntime.transformers.convert_generation``) covers GPT-2 and T5; its BART
scripts are not in the wheel. The operator takes an encoder-decoder (``model_type=1``) as two subgraphs with
fixed input and output names, which this module wires from optimum's split export (no decoder merging):

- ``encoder``: encoder + first decoder step. In: ``encoder_input_ids``, ``encoder_attention_mask``,
  ``decoder_input_ids`` (int32). Out: ``logits``, ``encoder_hidden_states``, ``present_{key,value}_self_<i>``,
  ``present_{key,value}_cross_<i>``.
- ``decoder``: one step with the key/value cache. In: ``input_ids``, ``encoder_attention_mask`` (int32),
  ``past_{key,value}_self_<i>``, ``past_{key,value}_cross_<i>``. Out: ``logits``, ``present_{key,value}_self_<i>``.

Generation settings that are inputs of the operator (beams, lengths, length penalty) stay per request;
``no_repeat_ngram_size`` and ``early_stopping`` are attributes, fixed here from the model's generation config
(the engine makes a session per other n-gram size from this graph: serving/search_sessions.py). BART's forced
first token (``forced_bos_token_id``) becomes the operator's ``prefix_vocab_mask`` input, which masks the first
step (the engine also biases that step's logits so that the token scores 0, as in transformers).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

GRAPH_FILE = "beam_search.onnx"
INFO_FILE = "beam_search.json"


def export_beam_search(hf_dir: str | Path, onnx_dir: str | Path,
                       transform: Callable[[Path, Path], None] | None = None) -> Path:
    """Export ``hf_dir`` with optimum (split decoders) and write ``onnx_dir``/beam_search.onnx (+ .json).

    ``transform(split_dir, out_dir)``, when given, rewrites the three split graphs (same file names) before
    they are wired, e.g. int8 quantization (model_store/quantize.py): done on the split graphs, it also
    reaches the weights that the operator's two subgraphs share, which wiring moves to the outer graph."""
    from optimum.exporters.onnx import main_export

    from model_store.quiet import quiet_export

    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "split"
        with quiet_export():
            main_export(str(hf_dir), output=split, task="text2text-generation-with-past", do_validation=False,
                        no_post_process=True)
        if transform is not None:
            transformed = Path(tmp) / "transformed"
            transformed.mkdir()
            transform(split, transformed)
            split = transformed
        return build_beam_search(split, hf_dir, onnx_dir)


def build_beam_search(split_dir: str | Path, hf_dir: str | Path, onnx_dir: str | Path) -> Path:
    """Wire optimum's encoder_model / decoder_model / decoder_with_past_model.onnx into a BeamSearch graph."""
    import onnx
    from onnx import TensorProto, compose, helper
    from transformers import AutoConfig, GenerationConfig

    split_dir, onnx_dir = Path(split_dir), Path(onnx_dir)
    config = AutoConfig.from_pretrained(hf_dir)
    try:
        generation = GenerationConfig.from_pretrained(hf_dir)
    except OSError:
        generation = GenerationConfig.from_model_config(config)
    heads = config.decoder_attention_heads
    if config.d_model % heads:
        raise ValueError(f"d_model {config.d_model} is not a multiple of {heads} attention heads")
    head_size, vocab, layers = config.d_model // heads, config.vocab_size, config.decoder_layers
    start = generation.decoder_start_token_id if generation.decoder_start_token_id is not None \
        else config.decoder_start_token_id
    eos, pad = generation.eos_token_id, generation.pad_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    if None in (start, eos, pad):
        raise ValueError(f"{hf_dir}: BeamSearch needs decoder_start, eos and pad token ids; "
                         f"got {start}, {eos}, {pad}")
    forced_bos = getattr(generation, "forced_bos_token_id", None)
    no_repeat = int(generation.no_repeat_ngram_size or 0)

    f32, i32 = TensorProto.FLOAT, TensorProto.INT32

    def load(name: str):
        path = split_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: optimum's split export (no_post_process=True) is needed")
        return onnx.load(str(path))

    def prefixed(model, prefix: str):
        return compose.add_prefix(model, prefix).graph

    def cast(src: str, dst: str):
        return helper.make_node("Cast", [src], [dst], to=TensorProto.INT64, name=f"cast {dst}")

    def alias(src: str, dst: str):
        return helper.make_node("Identity", [src], [dst], name=f"alias {dst}")

    def cache(name: str, length):  # ONNX Runtime reads heads and head size from these shapes: numbers
        return helper.make_tensor_value_info(name, f32, ["batch", heads, length, head_size])

    logits = helper.make_tensor_value_info("logits", f32, ["batch", 1, vocab])
    encoder_model = load("encoder_model.onnx")

    # encoder + first decoder step ("e/" and "d/" keep the two graphs' names apart)
    enc, dec = prefixed(encoder_model, "e/"), prefixed(load("decoder_model.onnx"), "d/")
    nodes = [cast("encoder_input_ids", "e/input_ids"), cast("encoder_attention_mask", "e/attention_mask"),
             alias("e/attention_mask", "d/encoder_attention_mask"), cast("decoder_input_ids", "d/input_ids"),
             *enc.node, alias("e/last_hidden_state", "d/encoder_hidden_states"), *dec.node,
             alias("d/logits", "logits"), alias("e/last_hidden_state", "encoder_hidden_states")]
    outputs = [logits, helper.make_tensor_value_info("encoder_hidden_states", f32, ["batch", "enc_len", config.d_model])]
    for kind, part, length in (("self", "decoder", 1), ("cross", "encoder", "enc_len")):
        for i in range(layers):
            for kv in ("key", "value"):
                nodes.append(alias(f"d/present.{i}.{part}.{kv}", f"present_{kv}_{kind}_{i}"))
                outputs.append(cache(f"present_{kv}_{kind}_{i}", length))
    inputs = [helper.make_tensor_value_info(n, i32, ["batch", length]) for n, length in
              (("encoder_input_ids", "enc_len"), ("encoder_attention_mask", "enc_len"), ("decoder_input_ids", 1))]
    encoder_graph = helper.make_graph(nodes, "encoder and first decoder step", inputs, outputs,
                                      [*enc.initializer, *dec.initializer])

    # one decoder step with the cache
    step = prefixed(load("decoder_with_past_model.onnx"), "p/")
    nodes = [cast("input_ids", "p/input_ids"), cast("encoder_attention_mask", "p/encoder_attention_mask")]
    inputs = [helper.make_tensor_value_info("input_ids", i32, ["batch", 1]),
              helper.make_tensor_value_info("encoder_attention_mask", i32, ["batch", "enc_len"])]
    for kind, part, length in (("self", "decoder", "past_len"), ("cross", "encoder", "enc_len")):
        for i in range(layers):
            for kv in ("key", "value"):
                inputs.append(cache(f"past_{kv}_{kind}_{i}", length))
                nodes.append(alias(f"past_{kv}_{kind}_{i}", f"p/past_key_values.{i}.{part}.{kv}"))
    nodes += [*step.node, alias("p/logits", "logits")]
    outputs = [logits]
    for i in range(layers):
        for kv in ("key", "value"):
            nodes.append(alias(f"p/present.{i}.decoder.{kv}", f"present_{kv}_self_{i}"))
            outputs.append(cache(f"present_{kv}_self_{i}", "total_len"))
    decoder_graph = helper.make_graph(nodes, "decoder step", inputs, outputs, list(step.initializer))

    shared = _share_weights(encoder_graph, decoder_graph, config.d_model)

    node_inputs = ["input_ids", "max_length", "min_length", "num_beams", "num_return_sequences",
                   "length_penalty", "repetition_penalty", "", "prefix_vocab_mask" if forced_bos is not None else "",
                   "attention_mask"]
    search = helper.make_node("BeamSearch", node_inputs, ["sequences"], name="BeamSearch", domain="com.microsoft",
                              eos_token_id=eos, pad_token_id=pad, decoder_start_token_id=start,
                              no_repeat_ngram_size=no_repeat, early_stopping=1, model_type=1,
                              encoder=encoder_graph, decoder=decoder_graph)
    scalar = {"max_length": i32, "min_length": i32, "num_beams": i32, "num_return_sequences": i32,
              "length_penalty": f32, "repetition_penalty": f32}
    inputs = [helper.make_tensor_value_info("input_ids", i32, ["batch", "seq"])]
    inputs += [helper.make_tensor_value_info(n, t, [1]) for n, t in scalar.items()]
    if forced_bos is not None:
        inputs.append(helper.make_tensor_value_info("prefix_vocab_mask", i32, ["batch", vocab]))
    inputs.append(helper.make_tensor_value_info("attention_mask", i32, ["batch", "seq"]))
    graph = helper.make_graph([search], "BART beam search", inputs,
                              [helper.make_tensor_value_info("sequences", i32, ["batch", "returned", "length"])],
                              shared)
    opset = max(o.version for o in encoder_model.opset_import if o.domain in ("", "ai.onnx"))
    model = helper.make_model(graph, producer_name="summarizer model_store",
                              opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = encoder_model.ir_version
    onnx_dir.mkdir(parents=True, exist_ok=True)
    target = onnx_dir / GRAPH_FILE
    onnx.save(model, str(target))
    info = {"operator": "com.microsoft.BeamSearch", "no_repeat_ngram_size": no_repeat, "early_stopping": True,
            "decoder_start_token_id": start, "eos_token_id": eos, "pad_token_id": pad,
            "forced_bos_token_id": forced_bos,
            "forced_eos_token_id": getattr(generation, "forced_eos_token_id", None), "vocab_size": vocab}
    (onnx_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return target


def _share_weights(encoder_graph, decoder_graph, d_model: int) -> list:
    """Store each weight once: BART ties its embeddings and output projection, and both subgraphs carry the
    decoder's weights. Uses ONNX Runtime's own helpers (as its T5 converter does); returns the initializers
    the two subgraphs now share, for the main graph (subgraphs read them from the outer scope)."""
    from onnx import helper
    from onnxruntime.transformers.convert_generation import remove_shared_initializers
    from onnxruntime.transformers.onnx_model import OnnxModel

    caches = []
    for graph in (encoder_graph, decoder_graph):
        cache: dict = {}
        model = helper.make_model(graph)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a count of what it removed
            OnnxModel(model).remove_duplicated_initializer(cache)
        graph.CopyFrom(model.graph)
        caches.append(cache)
    # min_elements is compared with the *sum* of a tensor's dimensions: its default (1024) would leave every
    # 256 x 256 attention matrix of a small BART duplicated; d_model shares every matrix and d_model vector.
    return remove_shared_initializers(decoder_graph, encoder_graph, shared_prefix="shared/", min_elements=d_model,
                                      signature_cache1=caches[1], signature_cache2=caches[0])


def read_info(onnx_dir: str | Path) -> dict | None:
    """The build facts of ``onnx_dir``'s BeamSearch graph, or None when the model has none."""
    onnx_dir = Path(onnx_dir)
    if not (onnx_dir / GRAPH_FILE).exists() or not (onnx_dir / INFO_FILE).exists():
        return None
    return json.loads((onnx_dir / INFO_FILE).read_text())
