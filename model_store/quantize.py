"""Dynamic int8 quantization of a stored model's ONNX export (ONNX Runtime ``quantize_dynamic``).

    python -m model_store.quantize dialogue-bart-small:latest              # stores dialogue-bart-small-int8
    python -m model_store.quantize dialogue-bart-small:latest --name my-int8 --include-gather

Weights of every MatMul with a constant weight (projections, feed-forward, the LM head) become int8; the
activations are quantized on the fly per call (uint8), so no calibration data is needed. The merged decoder
keeps its key/value-cache branch: its subgraphs are quantized too (``EnableSubgraph``).

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
                    "decoder_with_past_model.onnx")


def quantize_onnx_dir(src: str | Path, dest: str | Path, include_gather: bool = False,
                      per_channel: bool = False) -> list[str]:
    """Quantize the ONNX graphs of an optimum export in ``src`` into ``dest``; copy everything else.

    Returns the names of the graphs that were quantized. ``include_gather`` also stores the embedding
    tables in int8 (smaller file, one more approximation); it is off by default because the embedding
    lookups cost nothing next to the matrix products.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dest = Path(src), Path(dest)
    if not (src / "encoder_model.onnx").exists():
        raise FileNotFoundError(f"{src} has no encoder_model.onnx: not an optimum seq2seq export")
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for path in sorted(src.iterdir()):
        if path.is_dir():
            continue
        if path.name in QUANTIZED_GRAPHS:
            quantize_dynamic(
                model_input=path, model_output=dest / path.name,
                op_types_to_quantize=["MatMul", "Gather"] if include_gather else ["MatMul"],
                weight_type=QuantType.QInt8, per_channel=per_channel,
                extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True},
            )
            done.append(path.name)
        elif not path.name.endswith(".onnx") and not path.name.endswith(".onnx_data"):
            shutil.copy2(path, dest / path.name)
    return done


def quantize_stored(tag: str, name: str | None = None, include_gather: bool = False,
                    per_channel: bool = False) -> str:
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
                                      per_channel=per_channel)
        files = {str(p.relative_to(staging)): sha256_file(p) for p in sorted(staging.rglob("*")) if p.is_file()}
        meta = dict(source.info.metadata)
        meta.update({
            "quantized_from": str(source.tag),
            "onnx": {"exported": True, "files": [f for f in files if f.startswith(ONNX_SUBDIR + "/")],
                     "task": "text2text-generation-with-past", "decoder": "merged, with key/value cache",
                     "quantization": {"method": "onnxruntime.quantization.quantize_dynamic",
                                      "weights": "int8", "activations": "uint8, dynamic",
                                      "ops": ["MatMul", "Gather"] if include_gather else ["MatMul"],
                                      "per_channel": per_channel, "graphs": quantized}},
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
    parser.add_argument("--per-channel", action="store_true", help="one scale per output channel")
    args = parser.parse_args(argv)
    print(f"stored {quantize_stored(args.tag, args.name, args.include_gather, args.per_channel)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
