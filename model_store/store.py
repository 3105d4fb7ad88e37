"""Put a summarizer into BentoML's model store: Hugging Face files, ONNX export, checksums, provenance.

A stored model is a directory with two parts that the backends load:

    hf/     config.json, generation_config.json, model.safetensors, tokenizer files (the PyTorch backend)
    onnx/   beam_search.onnx: encoder and decoder inside ONNX Runtime's BeamSearch operator (the ONNX
            backend), its weights in beam_search.weights (each once), beam_search.json

so each weight is stored twice at most: as PyTorch reads it and as ONNX Runtime maps it. Each heavy step
(loading a hub model, the ONNX export, the wiring) runs in a child process: the import's memory peak is its
largest step's (bench/large_model.py measures it at bart-large-cnn's size).

and metadata (source, sha256 of every file, parameter count, context length, generation defaults,
library versions) plus labels that say what it is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

from model_store.layout import DEFAULT_MODEL_NAME, HF_SUBDIR, ONNX_SUBDIR, REFERENCE_STATS

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"

# The files of a Hugging Face summarizer that serving needs (weights are converted to safetensors).
HF_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "vocab.json", "merges.txt", "README.md")


class ModelNotFoundError(LookupError):
    """The configured model is not in the store; the message names the command that imports it."""


@dataclass
class ImportResult:
    tag: str
    path: Path
    files: dict[str, str]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for name in ("transformers", "torch", "optimum-onnx", "onnxruntime", "onnx", "bentoml"):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def fetch_hf_files(source: str, dest: Path, revision: str | None = None) -> str:
    """Materialize a summarizer into ``dest`` as Hugging Face files; returns 'local' or 'huggingface'.

    A local directory with safetensors weights is copied as it is (nothing loaded: at bart-large-cnn's size
    loading costs GBs of memory for nothing). Anything else, a hub id (needs the network) or a directory with
    PyTorch pickles, is loaded through transformers in a child process and saved as safetensors, so both give
    one layout."""
    path = Path(source).expanduser()
    kind = "local" if path.is_dir() else "huggingface"
    if kind == "local" and not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} has no config.json: not a Hugging Face model directory")
    where = str(path) if kind == "local" else source
    kwargs = {"revision": revision} if (revision and kind == "huggingface") else {}
    if kind == "local" and safetensors_files(path):
        dest.mkdir(parents=True, exist_ok=True)
        for name in [*HF_FILES, SAFETENSORS_INDEX, *(p.name for p in safetensors_files(path))]:
            if (path / name).exists():
                shutil.copy2(path / name, dest / name)
    else:
        from model_store.child import run_in_child

        run_in_child(_load_and_save_weights, where, dest, kwargs)
    _complete_hf_files(where, dest, kwargs)
    for name in ("README.md", REFERENCE_STATS):
        if kind == "local" and (path / name).exists():
            shutil.copy2(path / name, dest / name)
    return kind


SAFETENSORS_INDEX = "model.safetensors.index.json"  # a sharded checkpoint's list of shards


def safetensors_files(hf_dir: Path) -> list[Path]:
    """The model's safetensors weights: model.safetensors, or the shards its index names."""
    index = hf_dir / SAFETENSORS_INDEX
    if index.exists():
        return [hf_dir / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [hf_dir / "model.safetensors"] if (hf_dir / "model.safetensors").exists() else []


def _load_and_save_weights(where: str, dest: Path, kwargs: dict) -> None:
    from transformers import AutoModelForSeq2SeqLM

    AutoModelForSeq2SeqLM.from_pretrained(where, **kwargs).save_pretrained(dest, safe_serialization=True)


def _complete_hf_files(where: str, dest: Path, kwargs: dict) -> None:
    """The tokenizer as ``tokenizers`` reads it (tokenizer.json, which older models lack) and the generation
    config, written by transformers (no model loaded)."""
    from transformers import AutoTokenizer, GenerationConfig

    if not (dest / "tokenizer.json").exists():
        AutoTokenizer.from_pretrained(where, **kwargs).save_pretrained(dest)
    if not (dest / "generation_config.json").exists():
        try:
            GenerationConfig.from_pretrained(where, **kwargs).save_pretrained(dest)
        except OSError:
            pass  # no generation config: the service falls back to production defaults


def export_onnx(hf_dir: Path, dest: Path) -> None:
    """The ONNX backend's graph: optimum's export of the encoder and decoder (with the key/value cache) inside
    ONNX Runtime's BeamSearch operator (model_store/beam_search.py), each weight once in its weights file."""
    from model_store.beam_search import export_beam_search

    export_beam_search(hf_dir, dest)


def import_model(source: str, name: str, labels: dict[str, str] | None = None, revision: str | None = None,
                 onnx: bool = True, progress: Callable[[str], None] | None = None) -> ImportResult:
    """Import ``source`` (local directory or hub id) as BentoML model ``name``; returns its tag and the
    directory it is stored in. ``progress`` receives one short line per step (the command line prints them)."""
    from transformers import AutoConfig

    steps = ["fetch Hugging Face files", "export ONNX (encoder, decoder, BeamSearch graph)", "checksums", "store"]
    if not onnx:
        steps.remove(steps[1])
    step = _stepper(f"import {name}", steps, progress)

    with tempfile.TemporaryDirectory() as staging_root:
        staging = Path(staging_root)
        step()
        kind = fetch_hf_files(source, staging / HF_SUBDIR, revision)
        if onnx:
            step()
            export_onnx(staging / HF_SUBDIR, staging / ONNX_SUBDIR)
        step()
        files = checksums(staging)
        config = AutoConfig.from_pretrained(staging / HF_SUBDIR)
        generation = json.loads((staging / HF_SUBDIR / "generation_config.json").read_text()) \
            if (staging / HF_SUBDIR / "generation_config.json").exists() else {}
        params = parameter_count(staging / HF_SUBDIR)
        meta = {
            "source": source if kind == "huggingface" else str(Path(source).resolve()),
            "source_kind": kind,
            "revision": revision or "",
            "architecture": (config.architectures or [config.model_type])[0],
            "parameters": params,
            "context_tokens": int(getattr(config, "max_position_embeddings", 1024)),
            "generation_defaults": generation,
            "onnx": {"exported": onnx, "files": [f for f in files if f.startswith(ONNX_SUBDIR + "/")],
                     "task": "text2text-generation-with-past", "decoder": "with key/value cache",
                     "beam_search": f"{ONNX_SUBDIR}/beam_search.onnx" in files},
            "sha256": files,
            "library_versions": _versions(),
        }
        all_labels = {"task": "summarization", "architecture": config.model_type, "source": kind,
                      "onnx": "yes" if onnx else "no", **(labels or {})}
        step()
        tag, path = store_files(name, all_labels, meta, staging, files)
    return ImportResult(tag=tag, path=path, files=files)


def _stepper(what: str, steps: list[str], progress: Callable[[str], None] | None) -> Callable[[], None]:
    """Calls ``progress`` with "what [i/n]: step" for the next step at each call (nothing without one)."""
    numbered = iter(enumerate(steps, 1))

    def step() -> None:
        i, label = next(numbered)
        if progress:
            progress(f"{what} [{i}/{len(steps)}]: {label}")
    return step


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by path relative to it (what ``verify`` re-checks)."""
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def store_files(name: str, labels: dict[str, str], metadata: dict, staging: Path,
                files: dict[str, str]) -> tuple[str, Path]:
    """Move ``files`` (relative to ``staging``) into a new version of BentoML model ``name``; returns its tag
    and its directory in the store (not the temporary one BentoML writes into before it saves)."""
    import bentoml

    with bentoml.models.create(name, labels=labels, metadata=_without_none(metadata)) as stored:
        for rel in files:
            target = Path(stored.path) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(staging / rel, target)  # not a copy: GBs at bart-large-cnn's size
    saved = bentoml.models.get(stored.tag)
    return str(saved.tag), Path(saved.path)


def _without_none(value):
    """BentoML metadata takes only basic types: drop None values (generation configs carry some)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def parameter_count(hf_dir: Path) -> int:
    """Values in the model's safetensors weights (read from the headers, nothing loaded)."""
    import math

    from safetensors import safe_open

    total = 0
    for path in safetensors_files(hf_dir):
        with safe_open(path, "np") as weights:
            total += sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())
    return total


def verify(tag: str) -> list[str]:
    """Files whose sha256 no longer matches the import (empty list: intact)."""
    stored = get_model(tag)
    return [rel for rel, _ in changed_files(Path(stored.path), stored.info.metadata.get("sha256", {}))]


def changed_files(root: Path, expected: dict[str, str],
                  wanted: Callable[[str], bool] = lambda rel: True) -> list[tuple[str, str]]:
    """(file, what is wrong) for each ``wanted`` file of ``expected`` (relative path -> sha256) that is missing
    under ``root`` or whose sha256 differs (a truncated or altered file: the store records no sizes)."""
    problems = []
    for rel, digest in expected.items():
        if not wanted(rel):
            continue
        path = root / rel
        if not path.is_file():
            problems.append((rel, "missing"))
        elif sha256_file(path) != digest:
            problems.append((rel, "truncated or altered: its sha256 differs from the one recorded at import"))
    return problems


class ModelFileError(RuntimeError):
    """A stored model's file is missing, truncated or altered; the message names it and the command that fixes it."""


def check_files(stored, wanted: Callable[[str], bool] = lambda rel: True) -> None:
    """Raise ModelFileError unless every ``wanted`` file of ``stored`` (a BentoML model) matches the sha256
    recorded at import. A model stored without checksums (none recorded) passes: there is nothing to compare."""
    problems = changed_files(Path(stored.path), stored.info.metadata.get("sha256", {}), wanted)
    if problems:
        listed = "; ".join(f"{rel} {what}" for rel, what in problems)
        raise ModelFileError(f"model {str(stored.tag)!r} in {stored.path}: {listed}. Fix: {reimport_hint(stored)}")


def reimport_hint(stored) -> str:
    """The command that stores a good copy of ``stored`` again, and how to serve it."""
    name = stored.tag.name
    meta = stored.info.metadata
    if meta.get("quantized_from"):
        command = f"python -m model_store quantize {meta['quantized_from']} --name {name}"
    elif stored.info.labels.get("default") == "yes" or name == DEFAULT_MODEL_NAME:
        command = "python -m model_store import-default --force"
    else:
        source = meta.get("source") or "<hf-id-or-directory>"
        command = f"python -m model_store import {source} --name {name}"
    return (f"import it again with `{command}` and serve the new version (SUMMARIZER_MODEL={name}:latest); "
            f"`bentoml models delete {stored.tag}` removes the damaged one")


def get_model(tag: str):
    """The stored model for ``tag``, or ModelNotFoundError naming the command that imports it."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag)
    except NotFound:
        name = tag.split(":")[0]
        hint = ("python -m model_store import-default" if name == DEFAULT_MODEL_NAME
                else f"python -m model_store import <hf-id-or-directory> --name {name}")
        raise ModelNotFoundError(f"model {tag!r} is not in the BentoML model store; import it with `{hint}` "
                                 "(or `make import-model`), or set SUMMARIZER_MODEL to a stored model "
                                 "(`python -m model_store list`)") from None


def import_default(name: str = DEFAULT_MODEL_NAME, if_missing: bool = True) -> str:
    """Import the shipped default model (model_store/default_model) unless an identical one is stored."""
    import bentoml

    from bentoml.exceptions import NotFound

    if if_missing:
        wanted = sha256_file(DEFAULT_MODEL_DIR / "model.safetensors")
        try:
            stored_versions = bentoml.models.list(name)
        except NotFound:  # raised, rather than an empty list, when no version of the name exists
            stored_versions = []
        reference = DEFAULT_MODEL_DIR / REFERENCE_STATS
        wanted_reference = sha256_file(reference) if reference.exists() else None
        for stored in stored_versions:
            # The same weights and the same drift reference (a version stored before the reference shipped
            # is imported again, so the service finds it).
            if (stored.info.labels.get("weights_sha256") == wanted and
                    stored.info.metadata.get("sha256", {}).get(f"{HF_SUBDIR}/{REFERENCE_STATS}") == wanted_reference):
                return str(stored.tag)
    return import_model(str(DEFAULT_MODEL_DIR), name,
                        labels={"weights_sha256": sha256_file(DEFAULT_MODEL_DIR / "model.safetensors"),
                                "default": "yes"}).tag
