"""Average the weights of checkpoints of one training run (the last epochs of a schedule, or runs from one start).

    python -m training.train_default --out runs/d1 ... --save-epochs        # keeps runs/d1/epoch-N
    python -m training.average --out runs/d1/avg-6-8 runs/d1/epoch-6 runs/d1/epoch-7 runs/d1/epoch-8

Each source is a Hugging Face model directory as the recipe saves it (``model.safetensors``, config, tokenizer,
generation config). The result is the element-wise mean of their weights, with the first source's config,
tokenizer and generation config (so its speaker placeholders and no_repeat_ngram_size), and a
``training_info.json`` naming the sources. Averaging is only meaningful for checkpoints that share an
architecture and a start; models of another shape or with other tensors are refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Sequence

WEIGHTS = "model.safetensors"


class IncompatibleCheckpoints(ValueError):
    """The sources do not hold the same tensors with the same shapes."""


def average(sources: Sequence[Path], dest: Path) -> Path:
    """Write the mean of ``sources``' weights to ``dest`` (replaced if it exists); returns ``dest``."""
    import torch
    from safetensors.torch import load_file, save_file

    if len(sources) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(sources)}")
    sources = [Path(s) for s in sources]
    states = [load_file(source / WEIGHTS) for source in sources]
    first = states[0]
    for source, state in zip(sources[1:], states[1:]):
        if state.keys() != first.keys():
            raise IncompatibleCheckpoints(f"{source} holds other tensors than {sources[0]}: "
                                          f"{sorted(state.keys() ^ first.keys())[:5]}")
        shapes = [k for k in first if state[k].shape != first[k].shape]
        if shapes:
            raise IncompatibleCheckpoints(f"{source} differs in shape from {sources[0]} at {shapes[:5]}")
    mean = {name: (torch.stack([state[name].double() for state in states]).mean(0)).to(tensor.dtype)
            if tensor.is_floating_point() else tensor
            for name, tensor in first.items()}
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(sources[0], tmp, ignore=shutil.ignore_patterns(WEIGHTS, "training_info.json"))
    save_file(mean, str(tmp / WEIGHTS), metadata={"format": "pt"})
    infos = [json.loads((s / "training_info.json").read_text()) if (s / "training_info.json").exists() else {}
             for s in sources]
    (tmp / "training_info.json").write_text(json.dumps({
        "averaged_from": [str(s) for s in sources],
        "sources": [{"path": str(s), "epoch": info.get("epoch"), "step": info.get("step")}
                    for s, info in zip(sources, infos)],
        "parameters": infos[0].get("parameters")}, indent=2) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.average", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory of the averaged model (replaced)")
    parser.add_argument("sources", nargs="+", help="model directories saved by the recipe (two or more)")
    args = parser.parse_args(argv)
    try:
        dest = average([Path(s) for s in args.sources], Path(args.out))
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    print(f"averaged {len(args.sources)} checkpoints into {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
