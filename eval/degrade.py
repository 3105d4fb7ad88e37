"""Deliberately worse candidates, built from a good model, to prove that the gate blocks them.

Each builder writes a stored-model layout (``hf/`` + ``onnx/``) into a directory that ``python -m eval gate
--model DIR --baseline eval/baselines/<good-model>.json`` evaluates like any candidate:

    capped_generation   generation_config max_new_tokens capped (a "changed generation setting")
    noisy_weights       Gaussian noise on every weight matrix (a bad fine-tune or a corrupted file)
    int8_onnx           the int8 model that `python -m model_store quantize` stores (model_store.quantize:
                        every weight MatMul of every ONNX graph dynamically quantized, the BeamSearch graph
                        that the ONNX engine runs rebuilt from quantized split graphs); the PyTorch weights
                        stay fp32, so the backend-agreement check sees the difference too

    python -m eval.degrade noise dialogue-bart-small:latest /tmp/noisy --std 1.0
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from serving.engines import HF_SUBDIR, ONNX_SUBDIR


def _source_layout(source: str) -> Path:
    """A stored model's directory (tag or path with hf/ + onnx/)."""
    path = Path(source).expanduser()
    if (path / HF_SUBDIR / "config.json").exists():
        return path
    from model_store.store import get_model

    return Path(get_model(source if ":" in source else source + ":latest").path)


def _copy(source: str, dest: str | Path, onnx: bool = True) -> Path:
    src, dest = _source_layout(source), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src / HF_SUBDIR, dest / HF_SUBDIR)
    if onnx and (src / ONNX_SUBDIR).exists():
        shutil.copytree(src / ONNX_SUBDIR, dest / ONNX_SUBDIR)
    return dest


def capped_generation(source: str, dest: str | Path, max_new_tokens: int = 4) -> Path:
    """The same model whose generation_config.json stops after ``max_new_tokens`` tokens."""
    dest = _copy(source, dest)
    for sub in (HF_SUBDIR, ONNX_SUBDIR):
        path = dest / sub / "generation_config.json"
        if path.exists():
            config = json.loads(path.read_text())
            config["max_new_tokens"] = max_new_tokens
            config["min_new_tokens"] = min(config.get("min_new_tokens") or 0, max_new_tokens)
            config.pop("max_length", None)
            path.write_text(json.dumps(config, indent=2) + "\n")
    return dest


def noisy_weights(source: str, dest: str | Path, std: float = 1.0, seed: int = 0) -> Path:
    """Every weight matrix plus Gaussian noise of ``std`` times its own standard deviation (PyTorch only:
    the copy has no ONNX export; the suite exports one when the ONNX backend is asked for)."""
    import torch
    from safetensors.torch import load_file, save_file

    dest = _copy(source, dest, onnx=False)
    weights = dest / HF_SUBDIR / "model.safetensors"
    tensors = load_file(weights)
    generator = torch.Generator().manual_seed(seed)
    noisy = {}
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.dim() >= 2:
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32) * (std * tensor.float().std())
            tensor = (tensor.float() + noise).to(tensor.dtype)
        noisy[name] = tensor.contiguous()
    save_file(noisy, weights, metadata={"format": "pt"})
    return dest


def int8_onnx(source: str, dest: str | Path) -> Path:
    """``source`` with int8 ONNX graphs, built by the code that ``python -m model_store quantize`` runs
    (``model_store.quantize.quantize_layout``), so the ONNX engine serves int8 weights also through its
    BeamSearch graph; the ``hf/`` files (PyTorch) are copied unchanged."""
    from model_store.quantize import quantize_layout

    src, dest = _source_layout(source), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    quantize_layout(src, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.degrade", description="Build a deliberately worse "
                                     "candidate from a stored model, to see the gate block it.")
    sub = parser.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("cap", help="cap max_new_tokens")
    p.add_argument("--max-new-tokens", type=int, default=4)
    p = sub.add_parser("noise", help="Gaussian noise on the weights")
    p.add_argument("--std", type=float, default=1.0, help="noise std as a multiple of each matrix's std")
    sub.add_parser("int8", help="int8 ONNX graphs, as `python -m model_store quantize` makes them")
    for p in sub.choices.values():
        p.add_argument("source", help="model tag or stored layout directory")
        p.add_argument("dest", help="directory to write (replaced)")
    args = parser.parse_args(argv)
    if args.kind == "cap":
        out = capped_generation(args.source, args.dest, args.max_new_tokens)
    elif args.kind == "noise":
        out = noisy_weights(args.source, args.dest, args.std)
    else:
        out = int8_onnx(args.source, args.dest)
    print(f"{out}: gate it with `python -m eval gate --model {out} --baseline eval/baselines/<model>.json`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
