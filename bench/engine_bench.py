"""In-process engine measurements: a direct ``generate()`` call (the serving-overhead baseline) and ONNX
Runtime (fp32, int8) versus PyTorch on the same model, inputs, beams and threads, with a breakdown of
where a summary's time goes (the model's own forward passes versus the generate() loop around them).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.stats import mean, median, ratio_spread, spread


def load_engines(hf_dir: Path, onnx_dir: Path, threads: int, int8_dir: Path | None = None,
                 untuned: bool = False, model_tag: str = "bench") -> dict:
    """name -> engine. 'onnx' is the engine as served (ONNX Runtime's BeamSearch operator for every
    setting); 'onnx_generate' the same ONNX graphs under transformers' generate() loop (bench.generate_loop);
    'onnx_no_spin' the operator with ONNX Runtime's workers sleeping between operators (no spin-waiting);
    'onnx_untuned' that loop with the settings it had before tuning: PyTorch's default thread pool in
    the generate() loop, spinning ONNX Runtime workers, and transformers' per-step signature inspection
    (the ablations behind the three steps in the README)."""
    from bench.generate_loop import GenerateLoopEngine
    from serving.engines import OnnxEngine, TorchEngine

    engines = {"torch": TorchEngine(hf_dir, model_tag, device="cpu", threads=threads),
               "onnx": OnnxEngine(hf_dir, model_tag, threads=threads, onnx_dir=onnx_dir)}
    if int8_dir is not None:
        engines["onnx_int8"] = OnnxEngine(hf_dir, model_tag, threads=threads, onnx_dir=int8_dir)
    # ablation: the same graphs under transformers' generate() loop
    engines["onnx_generate"] = GenerateLoopEngine(hf_dir, model_tag, threads=threads, onnx_dir=onnx_dir)
    if untuned:  # ablation: the operator with ONNX Runtime's workers sleeping between operators
        engines["onnx_no_spin"] = OnnxEngine(hf_dir, model_tag, threads=threads, onnx_dir=onnx_dir,
                                             search_spinning=False)
        engine = GenerateLoopEngine(hf_dir, model_tag, threads=threads, onnx_dir=onnx_dir, spinning=True,
                                    torch_threads=0)
        model = engine.model
        model._get_logits_processor = type(model)._get_logits_processor.__get__(model)  # undo the cache
        engines["onnx_untuned"] = engine
    return engines


@contextmanager
def quantized_copy(hf_dir: Path, onnx_dir: Path):
    """A temporary stored-model layout (hf/ linked, onnx/ quantized to int8 by ``model_store.quantize``);
    yields its directory, removed afterwards."""
    from model_store.quantize import quantize_onnx_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    try:
        (tmp / "hf").symlink_to(Path(hf_dir).resolve(), target_is_directory=True)
        quantize_onnx_dir(onnx_dir, tmp / "onnx", hf_dir=hf_dir)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ModelClock:
    """Time spent inside the model's own forward passes during generate(): ONNX Runtime session runs,
    or PyTorch module forwards (encoder + decoder steps). The rest of generate() is the loop around
    them: beam search bookkeeping, logits processors, cache reordering, tokenizer and padding. With
    ONNX Runtime's BeamSearch operator the whole search is one session run: "model" then includes
    the operator's own (C++) loop, and the rest is tokenization, padding and decoding."""

    def __init__(self, engine) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._undo: list[Callable[[], None]] = []
        model = getattr(engine, "model", None)  # none for the BeamSearch engine: its one session is timed
        if getattr(engine, "search", None) is not None:  # BeamSearch operator: the loop runs inside it
            self._wrap_session(engine.search)
        if hasattr(model, "encoder") and hasattr(model.encoder, "session"):  # optimum ORT model
            for part in (model.encoder, model.decoder, getattr(model, "decoder_with_past", None)):
                if part is not None:
                    self._wrap_session(part.session)
        elif model is not None:
            self._hook(model)
            self._hook(model.get_encoder())

    def _wrap_session(self, session) -> None:
        original = session.run

        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        session.run = run
        self._undo.append(lambda: delattr(session, "run"))

    def _hook(self, module) -> None:
        starts: list[float] = []

        def pre(_module, _args):
            starts.append(time.perf_counter())

        def post(_module, _args, _output):
            self.seconds += time.perf_counter() - starts.pop()
            self.calls += 1

        handles = [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        self._undo.append(lambda: [h.remove() for h in handles])

    def close(self) -> None:
        for undo in self._undo:
            undo()
        self._undo.clear()


def time_summaries(engine, texts: Sequence[str], settings) -> list[float]:
    out = []
    for text in texts:
        t0 = time.perf_counter()
        engine.summarize([text], settings)
        out.append(time.perf_counter() - t0)
    return out


def onnx_vs_torch(engines: dict, texts: Sequence[str], settings, repeats: int, log=print) -> dict:
    """Latency per summary (batch of one) for every engine, rounds interleaved so that drift hits all;
    per round the median over ``texts``; ratios to PyTorch pair by pair (round by round)."""
    names = list(engines)
    for engine in engines.values():  # warm-up: first calls allocate, build caches
        engine.summarize([texts[0]], settings)
    per_round: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            per_round[name].append(median(time_summaries(engines[name], texts, settings)))
        log(f"  onnx_vs_torch round {r + 1}/{repeats}: " +
            ", ".join(f"{n} {per_round[n][-1] * 1000:.0f} ms" for n in names))
    out = {"latency_s": {name: spread(vals) for name, vals in per_round.items()}, "ratio_to_torch": {}}
    for name in names:
        if name != "torch":
            out["ratio_to_torch"][name] = ratio_spread(per_round[name], per_round["torch"])
    out["same_summaries_as_torch"] = {
        name: _same(engines[name], engines["torch"], texts, settings) for name in names if name != "torch"}
    out["breakdown"] = {name: breakdown(engine, texts, settings) for name, engine in engines.items()}
    return out


def _same(a, b, texts, settings) -> float:
    sa = [r.summary for r in a.summarize(list(texts), settings)]
    sb = [r.summary for r in b.summarize(list(texts), settings)]
    return sum(x == y for x, y in zip(sa, sb, strict=True)) / max(1, len(sa))


def breakdown(engine, texts: Sequence[str], settings) -> dict:
    """Where one summary's time goes (medians over ``texts``): model forward passes vs the rest."""
    clock = ModelClock(engine)
    totals, model, steps, tokens = [], [], [], []
    try:
        for text in texts:
            before_s, before_calls = clock.seconds, clock.calls
            t0 = time.perf_counter()
            [result] = engine.summarize([text], settings)
            totals.append(time.perf_counter() - t0)
            model.append(clock.seconds - before_s)
            steps.append(clock.calls - before_calls)
            tokens.append(result.output_tokens)
    finally:
        clock.close()
    total = median(totals)
    in_model = median(model)
    calls = median(steps)
    return {"total_ms": round(total * 1000, 2), "model_forward_ms": round(in_model * 1000, 2),
            "generate_loop_ms": round((total - in_model) * 1000, 2),
            "model_share": round(in_model / total, 3) if total else None,
            "forward_calls": calls, "output_tokens": median(tokens),
            "per_call_model_ms": round(in_model * 1000 / calls, 3) if calls else None,
            "per_call_loop_ms": round((total - in_model) * 1000 / calls, 3) if calls else None}


def batching_groups(engine, texts: Sequence[str], settings, batch_size: int) -> dict:
    """How the engine splits BentoML batches of ``batch_size`` dialogues into generate() calls (it groups
    by length to limit padding): the number of calls and dialogues per call."""
    from serving.protocol import GenerationJob

    sizes = []
    for i in range(0, len(texts) - batch_size + 1, batch_size):
        jobs = [GenerationJob(text=t, settings=settings, enqueued_at=0.0) for t in texts[i:i + batch_size]]
        sizes.extend(len(g) for g in engine.group(engine.encode(jobs)))
    return {"batch_size": batch_size, "generate_calls_per_batch": len(sizes) / max(1, len(texts) // batch_size),
            "dialogues_per_call": spread(sizes) if sizes else None}


def int8_quality(fp32_ref: str, int8_layout: Path | None, int8_tag: str | None, subset: str, limit: int | None,
                 threads: int, cache_dir: str | None, log=print) -> dict:
    """ROUGE-L of int8 ONNX against fp32 ONNX with the evaluation suite (``eval.suite.run_suite``): same
    dialogues, same settings; paired difference with its bootstrap 95 % interval, per evaluation set."""
    from eval.generate import resolve_candidate
    from eval.rouge import bootstrap_ci
    from eval.suite import SuiteOptions, run_suite

    options = SuiteOptions(subset=subset, backends=("onnx",), limit=limit, threads=threads, progress=False,
                           cache=True, cache_dir=cache_dir)
    fp32 = run_suite(resolve_candidate(fp32_ref), options, log=lambda m: log("  eval fp32: " + m))
    int8_candidate = resolve_candidate(int8_tag) if int8_tag else resolve_candidate(str(int8_layout), name="int8")
    int8 = run_suite(int8_candidate, options, log=lambda m: log("  eval int8: " + m))
    sets = {}
    all_deltas = []
    for name, per_backend in fp32.examples.items():
        a = per_backend["onnx"]
        b = int8.examples[name]["onnx"]
        deltas = [b[i]["scores"]["rougeL"] - a[i]["scores"]["rougeL"] for i in a]
        all_deltas.extend(deltas)
        low, high = bootstrap_ci(deltas)
        sets[name] = {"n": len(deltas), "rougeL_fp32": fp32.results[name]["onnx"]["scores"]["rougeL"]["mean"],
                      "rougeL_int8": int8.results[name]["onnx"]["scores"]["rougeL"]["mean"],
                      "delta": mean(deltas), "delta_ci95": [low, high],
                      "same_summaries": sum(a[i]["summary"] == b[i]["summary"] for i in a) / max(1, len(a))}
    worst = min((s["delta"] for s in sets.values()), default=None)
    return {"subset": subset, "limit": limit, "sets": sets, "worst_set_delta": worst,
            "pooled_delta": mean(all_deltas) if all_deltas else None,
            "command": f"python -m eval run --model <fp32 and int8 models> --backends onnx --subset {subset}"}


def batching_bound(engine, texts: Sequence[str], settings) -> dict:
    """What batching can gain inside the engine, without any serving: ``len(texts)`` dialogues one by one
    versus one ``Engine.generate`` call with all of them (grouped by length as the service does)."""
    t0 = time.perf_counter()
    for text in texts:
        engine.summarize([text], settings)
    singles = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.summarize(list(texts), settings)
    batched = time.perf_counter() - t0
    return {"dialogues": len(texts), "one_by_one_s": round(singles, 3), "one_batch_s": round(batched, 3),
            "speedup": round(singles / batched, 3) if batched else None}
