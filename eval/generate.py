"""Summaries for the suite: through the service's own engines (PyTorch, ONNX Runtime) or a running service.

What is scored is what is served: the engine backends are ``serving.engines.TorchEngine`` and
``OnnxEngine``, fed exactly as the BentoML backends feed them (``GenerationJob`` with resolved settings,
the model's own defaults unless overridden); the service backend posts to ``/summarize_batch`` of a
running ``bentoml serve``.

A candidate is a model in BentoML's store (``dialogue-bart-small:latest``) or a local directory: a stored
layout (``hf/`` + ``onnx/``) or a Hugging Face directory (its ONNX export is made once and cached).

Generated summaries are cached in ``.eval_cache/summaries/`` (``$SUMMARIZER_EVAL_CACHE``), one JSON Lines
file per (model files hash, backend, generation settings, engine code and library versions); a record
is reused only for the same example id and dialogue hash. An interrupted run resumes where it stopped.
A running service is never cached: its model tag says nothing about the code that serves it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

from eval.datasets import REPO_ROOT, Example, dialogue_sha
from model_store.beam_search import GRAPH_FILE

BACKENDS = ("torch", "onnx")
SERVICE = "service"
CACHE_ENV = "SUMMARIZER_EVAL_CACHE"
LIBRARIES = ("torch", "transformers", "tokenizers", "optimum-onnx", "optimum", "onnxruntime", "onnx", "bentoml",
             "rouge-score")
# Code whose change invalidates cached summaries (besides the library versions above).
ENGINE_CODE = ("serving/engines.py", "serving/engine_base.py", "serving/torch_engine.py", "serving/onnx_engine.py",
               "serving/search_sessions.py", "serving/tokenization.py", "serving/model_config.py",
               "serving/protocol.py", "serving/speakers.py")
_IGNORED_FILES = {"README.md"}


def default_model_ref() -> str:
    """The model the service serves: $SUMMARIZER_MODEL, else the default model's latest version."""
    from model_store.layout import DEFAULT_MODEL_NAME

    model = os.environ.get("SUMMARIZER_MODEL", "").strip() or f"{DEFAULT_MODEL_NAME}:latest"
    return model if ":" in model or _looks_like_path(model) else model + ":latest"


def cache_root(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get(CACHE_ENV) or REPO_ROOT / ".eval_cache")


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or os.sep in ref or Path(ref).expanduser().exists()


_digests: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoized by (path, size, mtime) within the process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def _digest_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --------------------------------------------------------------------------- candidates


@dataclass
class Candidate:
    """A model to evaluate: its Hugging Face directory and (optional) ONNX export, and their hashes."""

    name: str
    ref: str
    hf_dir: Path
    onnx_dir: Path | None
    tag: str | None = None
    known_sha256: dict[str, str] = field(default_factory=dict)  # "hf/x" -> digest, from the store's metadata
    labels: dict[str, str] = field(default_factory=dict)  # the stored model's labels
    # The model whose baseline gates this one, when the store's metadata names one (a fine-tune is gated against
    # the baseline of the model it was fine-tuned from: training/finetune_feedback.py).
    gate_baseline: str | None = None

    def files(self, backend: str) -> dict[str, str]:
        """Relative path -> sha256 of every file that the backend's output depends on."""
        dirs = [("hf", self.hf_dir)]
        if backend == "onnx":
            if self.onnx_dir is None:
                raise FileNotFoundError(f"{self.ref} has no ONNX export")
            dirs.append(("onnx", self.onnx_dir))
        out = {}
        for prefix, root in dirs:
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.name not in _IGNORED_FILES:
                    rel = f"{prefix}/{path.relative_to(root)}"
                    out[rel] = self.known_sha256.get(rel) or file_sha256(path)
        return out

    def fingerprint(self, backend: str) -> str:
        return _digest_json(self.files(backend))

    @property
    def weights_sha256(self) -> str:
        weights = self.hf_dir / "model.safetensors"
        if not weights.exists():
            return ""
        return self.known_sha256.get("hf/model.safetensors") or file_sha256(weights)

    def describe(self, backends: Sequence[str]) -> dict:
        return {"name": self.name, "ref": self.ref, "tag": self.tag, "weights_sha256": self.weights_sha256,
                "fingerprints": {b: self.fingerprint(b) for b in backends if b in BACKENDS}}


def resolve_candidate(ref: str | None = None, name: str | None = None) -> Candidate:
    """A BentoML model tag (default: the served model) or a local model directory."""
    from serving.engines import HF_SUBDIR, ONNX_SUBDIR

    ref = ref or default_model_ref()
    path = Path(ref).expanduser()
    if path.is_dir():
        if (path / HF_SUBDIR / "config.json").exists():
            hf_dir, onnx_candidates, default_name = path / HF_SUBDIR, [path / ONNX_SUBDIR], path.name
        elif (path / "config.json").exists():
            hf_dir = path
            onnx_candidates = [path.parent / ONNX_SUBDIR, path / ONNX_SUBDIR]
            default_name = path.parent.name if path.name == HF_SUBDIR else path.name
        else:
            raise FileNotFoundError(f"{path} is neither a stored model layout (hf/ + onnx/) nor a Hugging Face "
                                    "model directory (config.json)")
        onnx_dir = next((p for p in onnx_candidates if (p / GRAPH_FILE).exists()), None)
        return Candidate(name=name or default_name, ref=str(path), hf_dir=hf_dir.resolve(),
                         onnx_dir=onnx_dir.resolve() if onnx_dir else None)
    if _looks_like_path(ref):
        raise FileNotFoundError(f"model directory {path} does not exist")
    from model_store.store import get_model

    stored = get_model(ref if ":" in ref else ref + ":latest")
    root = Path(stored.path)
    onnx_dir = root / ONNX_SUBDIR
    return Candidate(name=name or stored.tag.name, ref=ref, hf_dir=root / HF_SUBDIR,
                     onnx_dir=onnx_dir if (onnx_dir / GRAPH_FILE).exists() else None,
                     tag=str(stored.tag), known_sha256=dict(stored.info.metadata.get("sha256", {}) or {}),
                     labels=dict(stored.info.labels), gate_baseline=stored.info.metadata.get("gate_baseline") or None)


def ensure_onnx(candidate: Candidate, cache: str | os.PathLike | None = None,
                log: Callable[[str], None] = print) -> Candidate:
    """Give a Hugging Face directory without an export one (optimum, as at import), cached by its files."""
    if candidate.onnx_dir is not None:
        return candidate
    from model_store.store import export_onnx

    dest = cache_root(cache) / "onnx" / candidate.fingerprint("torch")[:20]
    if not (dest / GRAPH_FILE).exists():
        log(f"exporting {candidate.ref} to ONNX (once; cached in {dest})")
        export_onnx(candidate.hf_dir, dest)
    candidate.onnx_dir = dest
    return candidate


# --------------------------------------------------------------------------- generators


class EngineGenerator:
    """One of the service's engines, loaded on first use."""

    batched = True

    def __init__(self, candidate: Candidate, backend: str, threads: int = 0) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.candidate = candidate
        self.backend = backend
        self.threads = threads
        self._engine = None
        self.beam_search_summaries = 0  # generated by ONNX Runtime's BeamSearch graph (ONNX only)

    @property
    def engine(self):
        if self._engine is None:
            from serving.engines import OnnxEngine, TorchEngine

            label = self.candidate.tag or self.candidate.ref
            if self.backend == "torch":
                self._engine = TorchEngine(self.candidate.hf_dir, label, threads=self.threads)
            else:
                self._engine = OnnxEngine(self.candidate.hf_dir, label, threads=self.threads,
                                          onnx_dir=self.candidate.onnx_dir)
        return self._engine

    def prepare(self) -> None:
        """Load the engine now (kept out of the generation timing)."""
        self.engine  # noqa: B018 - loads on first access

    def default_settings(self):
        from serving.engines import default_settings

        return default_settings(self.candidate.hf_dir)

    def cache_key(self, settings) -> str | None:
        code = {rel: file_sha256(REPO_ROOT / rel) for rel in ENGINE_CODE if (REPO_ROOT / rel).exists()}
        return _digest_json({"model": self.candidate.fingerprint(self.backend), "backend": self.backend,
                             "settings": settings.model_dump(), "code": code, "versions": library_versions()})

    def describe(self) -> dict:
        out = {"kind": "engine", "backend": self.backend, "runs_on": str(self.engine.engine)}
        if getattr(self.engine, "search", None) is not None:  # which graph scored (an int8 or an fp32 one)

            out.update(beam_search_graph=str(self.candidate.onnx_dir / GRAPH_FILE),
                       beam_search_summaries=self.beam_search_summaries)
        return out

    def __call__(self, texts: Sequence[str], settings) -> list[dict]:
        if self.backend == "onnx":  # every setting runs in the BeamSearch graph
            self.beam_search_summaries += len(texts)
        return [{"summary": r.summary, "output_tokens": r.output_tokens, "truncated": r.truncated,
                 "backend": r.backend} for r in self.engine.summarize(list(texts), settings)]


class ServiceGenerator:
    """A running summarizer service, end to end over HTTP (``/model`` and ``/summarize_batch``), through
    the project's client: an unreachable service or an error answer is a one-line ``client.ClientError``."""

    backend = SERVICE

    def __init__(self, url: str, timeout_s: float = 600.0) -> None:
        from client import SummarizerClient

        self.client = SummarizerClient(url, timeout_s=timeout_s)
        self.url = self.client.url
        self.info = self.client.model()

    def prepare(self) -> None:
        pass

    def default_settings(self):
        from serving.protocol import GenerationSettings

        return GenerationSettings(**self.info["generation_defaults"])

    def cache_key(self, settings) -> str | None:
        return None

    def describe(self) -> dict:
        return {"kind": "service", "url": self.url, "model": self.info.get("model"),
                "primary": self.info.get("primary"), "fallback": self.info.get("fallback")}

    def __call__(self, texts: Sequence[str], settings) -> list[dict]:
        batch = self.client.summarize_batch(list(texts), settings.model_dump())
        return [{"summary": s.summary, "output_tokens": s.output_tokens, "truncated": s.truncated,
                 "backend": s.backend.value} for s in batch.summaries]


# --------------------------------------------------------------------------- cache and the generation loop


class SummaryCache:
    """Append-only JSON Lines per generation key; records are matched by example id and dialogue hash."""

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True) -> None:
        self.root = cache_root(root) / "summaries"
        self.enabled = enabled

    def _path(self, key: str) -> Path:
        return self.root / f"{key[:32]}.jsonl"

    def load(self, key: str | None) -> dict[str, dict]:
        if not self.enabled or key is None or not self._path(key).exists():
            return {}
        out = {}
        with open(self._path(key), encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interrupted run
                out[record["id"]] = record
        return out

    def append(self, key: str | None, records: Sequence[dict]) -> None:
        if not self.enabled or key is None or not records:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self._path(key), "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


@dataclass
class GenerationStats:
    generated: int = 0
    cached: int = 0
    seconds: float = 0.0


def generate_summaries(generator, examples: Sequence[Example], settings, cache: SummaryCache | None = None,
                       batch_size: int = 16, progress: bool = True, desc: str = "") -> tuple[dict[str, dict], GenerationStats]:
    """Summaries of ``examples`` by id (from the cache where possible), with a progress bar."""
    from tqdm import tqdm

    cache = cache or SummaryCache(enabled=False)
    key = generator.cache_key(settings)
    known = cache.load(key)
    out: dict[str, dict] = {}
    todo = []
    for example in examples:
        record = known.get(example.id)
        if record is not None and record.get("dialogue_sha") == dialogue_sha(example):
            out[example.id] = record
        else:
            todo.append(example)
    stats = GenerationStats(cached=len(out))
    # Similar lengths together: less padding per generate() call (the engine also groups by length).
    todo.sort(key=lambda ex: len(ex.dialogue))
    bar = tqdm(total=len(examples), initial=len(out), desc=desc, unit="dlg", disable=not progress,
               file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 15.0, dynamic_ncols=True)
    if todo:
        generator.prepare()
    started = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        results = generator([ex.dialogue for ex in chunk], settings)
        records = [{"id": ex.id, "dialogue_sha": dialogue_sha(ex), **result} for ex, result in zip(chunk, results)]
        cache.append(key, records)
        for record in records:
            out[record["id"]] = record
        bar.update(len(chunk))
    stats.seconds = time.perf_counter() - started
    stats.generated = len(todo)
    bar.close()
    return out, stats
