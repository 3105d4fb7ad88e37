"""Dynamic int8 quantization of a stored model's ONNX export (ONNX Runtime ``quantize_dynamic``).

    python -m model_store.quantize dialogue-bart-small:latest              # stores dialogue-bart-small-int8
    python -m model_store.quantize dialogue-bart-small:latest --name my-int8 --quantize-lm-head

Weights of every MatMul with a constant weight (attention projections, feed-forward) become int8, one
scale per output channel; the activations are quantized on the fly per call (uint8), so no calibration
data is needed. The merged decoder keeps its key/value-cache branch: its subgraphs are quantized too
(``EnableSubgraph``), and so are the encoder and decoder inside the BeamSearch graph (weights that its two
subgraphs share live in the outer graph and stay fp32). The output projection (``/lm_head/MatMul``, 8k-vocabulary logits) stays fp32 by
default: quantizing it too was measurably worse on the (interim, epoch-1) default model: SAMSum ROUGE-L
-0.8 on the eval suite's ci subset, against -0.02 without it (the attention and feed-forward weights
alone cost nothing measurable); it would buy about a tenth more speed.

The int8 model is stored as a model of its own (default name ``<name>-int8``) with the same ``hf/`` files
and the quantized ``onnx/`` files, so the service serves it unchanged: ``SUMMARIZER_MODEL=<name>-int8``
(the ONNX backend then runs int8; a PyTorch backend, if one is routed to, runs the fp32 ``hf/`` weights).
Whether int8 keeps the quality is not assumed: ``python -m bench`` measures its ROUGE-L against fp32
ONNX on DialogSum and reports it next to the speed-up.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from serving.engines import HF_SUBDIR, ONNX_SUBDIR

QUANTIZED_GRAPHS = ("encoder_model.onnx", "decoder_model_merged.onnx", "decoder_model.onnx",
                    "decoder_with_past_model.onnx", "beam_search.onnx")
# model_store/beam_search.py prefixes the names of its subgraphs' nodes: encoder "e/", decoder steps "d/", "p/"
SUBGRAPH_PREFIXES = ("e/", "d/", "p/")


KEEP_FP32 = ("/lm_head/MatMul",)


def quantize_onnx_dir(src: str | Path, dest: str | Path, include_gather: bool = False,
                      per_channel: bool = True, exclude: tuple[str, ...] = KEEP_FP32) -> list[str]:
    """Quantize the ONNX graphs of an optimum export in ``src`` into ``dest``; copy everything else.

    Returns the names of the graphs that were quantized. ``include_gather`` also stores the embedding
    tables in int8 (smaller file, one more approximation); it is off by default because the embedding
    lookups cost nothing next to the matrix products. ``exclude``: node names kept in fp32 (e.g.
    ``/lm_head/MatMul``, the output projection, in every graph and branch that has it).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import logging

    src, dest = Path(src), Path(dest)
    if not (src / "encoder_model.onnx").exists():
        raise FileNotFoundError(f"{src} has no encoder_model.onnx: not an optimum seq2seq export")
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for path in sorted(src.iterdir()):
        if path.is_dir():
            continue
        if path.name in QUANTIZED_GRAPHS:
            logging.getLogger().addFilter(_no_preprocess_hint)
            try:
                quantize_dynamic(
                    model_input=path, model_output=dest / path.name,
                    op_types_to_quantize=["MatMul", "Gather"] if include_gather else ["MatMul"],
                    weight_type=QuantType.QInt8, per_channel=per_channel,
                    nodes_to_exclude=[p + n for n in exclude for p in ("", *SUBGRAPH_PREFIXES)],
                    extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True},
                )
            finally:
                logging.getLogger().removeFilter(_no_preprocess_hint)
            if path.name == "beam_search.onnx":
                _restore_contrib_domain(dest / path.name)
            done.append(path.name)
        elif not path.name.endswith(".onnx") and not path.name.endswith(".onnx_data"):
            shutil.copy2(path, dest / path.name)
    return done


def _restore_contrib_domain(path: Path) -> None:
    """quantize_dynamic rewrites the top-level BeamSearch node without its ``com.microsoft`` domain (and ONNX
    Runtime then refuses the model: "No Op registered for BeamSearch"); put the domain back."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "BeamSearch":
            node.domain = "com.microsoft"
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(path))


def _no_preprocess_hint(record) -> bool:
    """quantize_dynamic logs a generic hint to run shape pre-processing; for these graphs it changes nothing."""
    return "pre-processing before quantization" not in record.getMessage()


def quantize_stored(tag: str, name: str | None = None, include_gather: bool = False,
                    per_channel: bool = True, exclude: tuple[str, ...] = KEEP_FP32) -> str:
    """Store an int8 copy of stored model ``tag`` (its hf/ files + quantized onnx/); returns the new tag."""
    import bentoml

    from model_store.store import _versions, _without_none, get_model, sha256_file

    source = get_model(tag)
    src_onnx = Path(source.path) / ONNX_SUBDIR
    if not (src_onnx / "encoder_model.onnx").exists():
        raise FileNotFoundError(f"{tag} has no ONNX export to quantize (was it imported with --no-onnx?)")
    new_name = name or f"{source.tag.name}-int8"
    with tempfile.TemporaryDirectory() as staging_root:
        staging = Path(staging_root)
        shutil.copytree(Path(source.path) / HF_SUBDIR, staging / HF_SUBDIR)
        quantized = quantize_onnx_dir(src_onnx, staging / ONNX_SUBDIR, include_gather=include_gather,
                                      per_channel=per_channel, exclude=exclude)
        files = {str(p.relative_to(staging)): sha256_file(p) for p in sorted(staging.rglob("*")) if p.is_file()}
        meta = dict(source.info.metadata)
        meta.update({
            "quantized_from": str(source.tag),
            "onnx": {"exported": True, "files": [f for f in files if f.startswith(ONNX_SUBDIR + "/")],
                     "task": "text2text-generation-with-past", "decoder": "merged, with key/value cache",
                     "quantization": {"method": "onnxruntime.quantization.quantize_dynamic",
                                      "weights": "int8", "activations": "uint8, dynamic",
                                      "ops": ["MatMul", "Gather"] if include_gather else ["MatMul"],
                                      "per_channel": per_channel, "kept_fp32": list(exclude),
                                      "graphs": quantized}},
            "sha256": files,
            "library_versions": _versions(),
        })
        labels = {**source.info.labels, "onnx": "int8", "quantized_from": str(source.tag)}
        labels.pop("default", None)
        with bentoml.models.create(new_name, labels=labels, metadata=_without_none(meta)) as stored:
            for rel in files:
                target = Path(stored.path) / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(staging / rel, target)
    return str(stored.tag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_store.quantize", description=__doc__.split("\n\n")[0])
    parser.add_argument("tag", help="stored model to quantize, e.g. dialogue-bart-small:latest")
    parser.add_argument("--name", help="name of the int8 model in the store (default: <name>-int8)")
    parser.add_argument("--include-gather", action="store_true", help="also store embedding tables in int8")
    parser.add_argument("--per-tensor", action="store_true", help="one scale per weight matrix (default: per "
                                                                   "output channel)")
    parser.add_argument("--quantize-lm-head", action="store_true", help="also the output projection (faster, "
                                                                        "less accurate)")
    args = parser.parse_args(argv)
    tag = quantize_stored(args.tag, args.name, args.include_gather, per_channel=not args.per_tensor,
                          exclude=() if args.quantize_lm_head else KEEP_FP32)
    print(f"stored {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
