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

Every weight is written once, into one external data file (``beam_search.weights``) next to the graph: the
split graphs are read one at a time and each distinct tensor is appended as it is met (``WeightsFile``), so
building never holds more than one split graph in memory (at bart-large-cnn's size a whole-graph build in memory
peaked at 19.8 GB, bench/large_model.py). A tensor both subgraphs read (the decoder's weights, the embeddings)
moves to the outer graph, where both see it.

Generation settings that are inputs of the operator (beams, lengths, length penalty) stay per request;
``no_repeat_ngram_size`` and ``early_stopping`` are attributes, fixed here from the model's generation config
(the engine makes a session per other n-gram size from this graph: serving/search_sessions.py). BART's forced
first token (``forced_bos_token_id``) becomes the operator's ``prefix_vocab_mask`` input, which masks the first
step (the engine also biases that step's logits so that the token scores 0, as in transformers).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

GRAPH_FILE = "beam_search.onnx"
INFO_FILE = "beam_search.json"
WEIGHTS_FILE = "beam_search.weights"  # the graph's external data: every weight once
INLINE_BELOW_BYTES = 1024  # smaller tensors (scalars, shapes) stay in the graph
SHARE_INLINE_FROM_BYTES = 64  # smaller tensors held in the graph are not worth a shared name
ALIGNMENT = 4096  # each tensor starts on a page: ONNX Runtime can map it from the file as it is


class WeightsFile:
    """One external data file that holds each distinct tensor once.

    ``externalize(graph)`` appends the graph's initializers that are not in the file yet and turns every
    initializer into a reference to its bytes (the graph keeps only names and shapes); identical tensors,
    wherever they come from, point at the same bytes, so ``offset_of`` says which initializers are the same."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offsets: dict[bytes, tuple[int, int]] = {}
        self._handle = open(path, "wb")

    def externalize(self, graph) -> None:
        import hashlib

        from onnx import numpy_helper

        for tensor in graph.initializer:
            raw = tensor.raw_data if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).tobytes()
            if len(raw) < INLINE_BELOW_BYTES:
                continue
            digest = hashlib.sha256(raw).digest()
            if digest not in self._offsets:
                offset = -self._handle.tell() % ALIGNMENT + self._handle.tell()
                self._handle.seek(offset)
                self._handle.write(raw)
                self._offsets[digest] = (offset, len(raw))
            offset, length = self._offsets[digest]
            _point_at(tensor, self.path.name, offset, length)

    def close(self) -> None:
        self._handle.close()


def _point_at(tensor, location: str, offset: int, length: int) -> None:
    """Make ``tensor`` a reference to ``length`` bytes at ``offset`` of ``location`` (its values dropped)."""
    from onnx import TensorProto

    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data",
                  "string_data"):
        tensor.ClearField(field)
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = TensorProto.EXTERNAL


def read_transposed_ties(graph) -> list[str]:
    """``MatMul(x, W)`` where ``W`` is another initializer of the graph transposed becomes ``FusedMatMul(x, E,
    transB=1)`` (an ONNX Runtime operator, the same matrix product), and ``W`` is dropped. BART's output
    projection is its embedding table, tied: the export writes it a second time, transposed (206 MB at
    bart-large-cnn's size). Returns the names of the dropped initializers."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    matrices = {t.name: t for t in graph.initializer if len(t.dims) == 2 and t.data_type == TensorProto.FLOAT}
    by_shape: dict[tuple, list] = {}
    for tensor in matrices.values():
        by_shape.setdefault(tuple(tensor.dims), []).append(tensor)
    products = [n for n in graph.node if n.op_type == "MatMul" and n.domain in ("", "ai.onnx")
                and len(n.input) == 2 and n.input[1] in matrices]
    # a corner of each matrix, read once: its first row and first column (the full comparison only where a
    # weight's row is another's column)
    corners = {name: _corner(tensor) for name, tensor in matrices.items() if tensor.dims[0] != tensor.dims[1]}
    tied: dict[str, str] = {}
    for name in {n.input[1] for n in products} & corners.keys():  # square weights (attention) are never tied
        rows, cols = matrices[name].dims
        for other in by_shape.get((cols, rows), []):
            if np.array_equal(corners[name][0], corners[other.name][1]) and np.array_equal(
                    numpy_helper.to_array(matrices[name]).T, numpy_helper.to_array(other)):
                tied[name] = other.name
                break
    for node in products:
        if node.input[1] in tied:
            node.op_type, node.domain = "FusedMatMul", "com.microsoft"
            node.input[1] = tied[node.input[1]]
            node.attribute.append(helper.make_attribute("transB", 1))
    still_read = {i for n in graph.node for i in n.input}
    dropped = [name for name in tied if name not in still_read]
    kept = [t for t in graph.initializer if t.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return dropped


def _corner(tensor, size: int = 16):
    """The first ``size`` values of a float matrix's first row and of its first column."""
    import numpy as np

    values = np.frombuffer(tensor.raw_data, dtype=np.float32).reshape(tuple(tensor.dims)) if tensor.raw_data \
        else np.asarray(tensor.float_data, dtype=np.float32).reshape(tuple(tensor.dims))
    return values[0, :size].copy(), values[:size, 0].copy()


def offset_of(tensor) -> int | None:
    """Where ``tensor``'s bytes start in its external data file (None for a tensor held in the graph)."""
    entries = {entry.key: entry.value for entry in tensor.external_data}
    return int(entries["offset"]) if "offset" in entries else None


def export_beam_search(hf_dir: str | Path, onnx_dir: str | Path,
                       transform: Callable[[Path, Path], None] | None = None) -> Path:
    """Export ``hf_dir`` with optimum (split decoders) and write ``onnx_dir``/beam_search.onnx (+ its weights
    file and .json); each step in a child process (model_store/child.py).

    ``transform(split_dir, out_dir)``, when given, rewrites the three split graphs (same file names) before
    they are wired, e.g. int8 quantization (model_store/quantize.py): done on the split graphs, it also
    reaches the weights that the operator's two subgraphs share, which wiring moves to the outer graph.
    It must be picklable (a module-level function or a ``functools.partial`` of one)."""
    from model_store.child import run_in_child

    # each step in its own process: the export's memory is gone before the wiring loads the split graphs
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "split"
        run_in_child(export_split, Path(hf_dir), split)
        if transform is not None:
            transformed = Path(tmp) / "transformed"
            transformed.mkdir()
            run_in_child(transform, split, transformed)
            split = transformed
        return run_in_child(build_beam_search, split, Path(hf_dir), Path(onnx_dir))


def export_split(hf_dir: Path, split_dir: Path) -> None:
    """optimum's export of ``hf_dir`` as three graphs (encoder, decoder, decoder with the key/value cache)."""
    from optimum.exporters.onnx import main_export

    from model_store.quiet import quiet_export

    with quiet_export():
        main_export(str(hf_dir), output=split_dir, task="text2text-generation-with-past", do_validation=False,
                    no_post_process=True)


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

    onnx_dir.mkdir(parents=True, exist_ok=True)
    weights = WeightsFile(onnx_dir / WEIGHTS_FILE)

    def load(name: str):  # the graph with its weights moved to the weights file: one split graph in memory
        path = split_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: optimum's split export (no_post_process=True) is needed")
        model = onnx.load(str(path))
        read_transposed_ties(model.graph)
        weights.externalize(model.graph)
        return model

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

    weights.close()
    shared = _share_weights(encoder_graph, decoder_graph)

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
    target = onnx_dir / GRAPH_FILE
    onnx.save(model, str(target))
    info = {"operator": "com.microsoft.BeamSearch", "no_repeat_ngram_size": no_repeat, "early_stopping": True,
            "decoder_start_token_id": start, "eos_token_id": eos, "pad_token_id": pad,
            "forced_bos_token_id": forced_bos,
            "forced_eos_token_id": getattr(generation, "forced_eos_token_id", None), "vocab_size": vocab}
    (onnx_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return target


def _share_weights(*graphs) -> list:
    """Store each weight once: BART ties its embeddings and output projection, and both subgraphs carry the
    decoder's weights. Initializers that point at the same bytes of the weights file get one name; one that
    several graphs read moves to the outer graph (a subgraph reads its outer scope), which gets the returned
    initializers. Same-valued tensors are the same weight for the graph, whatever their names were (tensors
    held in the graph, below the weights file's threshold, are compared by their bytes)."""
    import hashlib

    uses: dict[tuple, list[tuple[object, object]]] = {}
    for graph in graphs:
        for tensor in graph.initializer:
            offset = offset_of(tensor)
            if offset is not None:
                where = ("file", offset)
            elif len(tensor.raw_data) >= SHARE_INLINE_FROM_BYTES:  # small int8 weights, scales
                where = ("inline", hashlib.sha256(tensor.raw_data).digest())
            else:
                continue
            uses.setdefault((*where, tensor.data_type, *tensor.dims), []).append((graph, tensor))
    outer, renames = [], {id(graph): {} for graph in graphs}
    kept: dict[int, list] = {id(graph): [] for graph in graphs}
    for number, (_, found) in enumerate(sorted(uses.items())):
        readers = {id(graph) for graph, _ in found}
        if len(found) == 1:
            continue
        name = f"shared/{number}"
        for graph, tensor in found:
            renames[id(graph)][tensor.name] = name
        tensor = type(found[0][1])()
        tensor.CopyFrom(found[0][1])
        tensor.name = name
        (outer if len(readers) > 1 else kept[next(iter(readers))]).append(tensor)
    for graph in graphs:
        rename = renames[id(graph)]
        remaining = [t for t in graph.initializer if t.name not in rename]
        del graph.initializer[:]
        graph.initializer.extend([*remaining, *kept[id(graph)]])
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name in rename:
                    node.input[i] = rename[name]
    return outer


def read_info(onnx_dir: str | Path) -> dict | None:
    """The build facts of ``onnx_dir``'s BeamSearch graph, or None when the model has none."""
    onnx_dir = Path(onnx_dir)
    if not (onnx_dir / GRAPH_FILE).exists() or not (onnx_dir / INFO_FILE).exists():
        return None
    return json.loads((onnx_dir / INFO_FILE).read_text())
