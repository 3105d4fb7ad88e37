"""The ablation baseline of the ONNX engine: optimum's default export (encoder, merged decoder) under
transformers' ``generate()`` loop, as the ONNX engine served before every setting ran in ONNX Runtime's
BeamSearch operator (serving/onnx_engine.py). Benchmarks only: it needs PyTorch, transformers and optimum,
which the service's ONNX path does not.

Its tuning (the README's performance steps): the PyTorch side of generate() runs on ``torch_threads``
threads (1) rather than a spin-waiting thread per core that competes with ONNX Runtime's pool, ONNX
Runtime's workers do not spin-wait unless ``spinning`` is set, and transformers' per-step
``inspect.signature`` calls of its logits-processor list are made once per processor class.

The stored model keeps only the BeamSearch graph (model_store/store.py), so the export this baseline loads is
made once per model and cached (``merged_export``; models stored before kept it in their onnx/ directory).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from model_store.layout import ONNX_SUBDIR
from serving.engines import Engine, generate_kwargs, session_options
from serving.protocol import EngineName, GenerationSettings


MERGED_DECODER = "decoder_model_merged.onnx"


def merged_export(hf_dir: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """optimum's default export of ``hf_dir`` (what ORTModelForSeq2SeqLM loads), made once in a child process
    and cached in the evaluation cache by the weights' hash."""
    from eval.generate import cache_root
    from model_store.child import run_in_child
    from model_store.store import safetensors_files, sha256_file

    weights = safetensors_files(Path(hf_dir))
    if not weights:
        raise FileNotFoundError(f"{hf_dir} has no safetensors weights")
    dest = cache_root(cache) / "onnx-merged" / sha256_file(weights[0])[:20]
    if not (dest / MERGED_DECODER).exists():
        run_in_child(_export_merged, Path(hf_dir), dest)
    return dest


def _export_merged(hf_dir: Path, dest: Path) -> None:
    from optimum.exporters.onnx import main_export

    from model_store.quiet import quiet_export

    with quiet_export():
        main_export(str(hf_dir), output=dest, task="text2text-generation-with-past", do_validation=False)


class GenerateLoopEngine(Engine):
    """ONNX Runtime sessions (encoder, merged decoder) driven by transformers' generate() in PyTorch."""

    engine = EngineName.ONNX_CPU
    search = None  # no BeamSearch session: ModelClock and bench.profile time the encoder and decoder sessions

    def __init__(self, model_dir: str | os.PathLike, model_tag: str = "bench", threads: int = 0,
                 onnx_dir: str | os.PathLike | None = None, spinning: bool = False, torch_threads: int = 1) -> None:
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSeq2SeqLM

        super().__init__(model_dir, model_tag)
        onnx_path = Path(onnx_dir) if onnx_dir else self.model_dir.parent / ONNX_SUBDIR
        if not (onnx_path / MERGED_DECODER).exists():
            onnx_path = merged_export(self.model_dir)
        options = session_options(ort, threads or (os.cpu_count() or 1), spinning)
        self.torch_threads = torch_threads
        self.model = ORTModelForSeq2SeqLM.from_pretrained(onnx_path, provider="CPUExecutionProvider",
                                                          session_options=options, use_cache=True)
        cache_processor_signatures(self.model)

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray, settings: GenerationSettings) -> np.ndarray:
        import torch

        before = torch.get_num_threads()
        if self.torch_threads and self.torch_threads != before:
            torch.set_num_threads(self.torch_threads)
        try:
            out = self.model.generate(input_ids=torch.from_numpy(input_ids),
                                      attention_mask=torch.from_numpy(attention_mask), **generate_kwargs(settings))
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)
        return out.numpy()


def cache_processor_signatures(model) -> None:
    """Make generate() build logits-processor lists that inspect each processor's signature once."""
    import inspect

    from transformers.generation.logits_process import LogitsProcessorList

    class CachedSignatureList(LogitsProcessorList):
        extra_args: dict = {}

        def __call__(self, input_ids, scores, **kwargs):
            for processor in self:
                key = type(processor)
                if key not in self.extra_args:
                    self.extra_args[key] = list(inspect.signature(processor.__call__).parameters)[2:]
                needed = self.extra_args[key]
                if needed:
                    if not all(arg in kwargs for arg in needed):
                        raise ValueError(f"{key} needs the parameters {needed}")
                    scores = processor(input_ids, scores, **kwargs)
                else:
                    scores = processor(input_ids, scores)
            return scores

    build = model._get_logits_processor
    model._get_logits_processor = lambda *args, **kwargs: CachedSignatureList(build(*args, **kwargs))
