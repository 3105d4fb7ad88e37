"""Where a batch's time goes inside ONNX Runtime: encoder, decoder by layer part, loop; per batch size.

    python -m bench.profile                          batch sizes 1, 8, 32 of DialogSum test dialogues
    python -m bench.profile --batch-sizes 1,32 --model my-model:latest
    python -m bench.profile --generate-loop          transformers' generate() around the ONNX graphs

For each batch size, the same ``--dialogues`` DialogSum test dialogues, that many per ``Engine.generate``
call (grouped by length inside a call, as the service does), with ONNX Runtime's profiler on. The path
profiled is the service's: ONNX Runtime's BeamSearch operator when the model has its graph (one session;
its encoder nodes are named "e/..."), else (or with ``--generate-loop``) the encoder and decoder sessions
under transformers' generate(). Reported: milliseconds per dialogue (timed again without the profiler,
which adds a cost per operator call); the shares of the wall time in encoder operators, decoder operators
and the rest ("loop": the beam search around the model, in C++ or Python, plus tokenization); the
decoder's time by layer part (cross-attention, self-attention, feed-forward, output projection, the rest);
and the bytes of cross-attention keys and values every decoding step reads: beam search repeats each
dialogue's encoder states once per beam, so a step reads
``dialogues x beams x layers x 2 x encoder length x d_model`` floats. That read grows with the batch and is
what limits the adaptive-batching gain on a CPU (``python -m bench``, item 2).
Results: a table on stdout, JSON in bench/results/profile-<time>.json (and profile-latest.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from bench.common import git_revision, load_dialogues, machine_info, now_iso, write_results  # noqa: E402

PARTS = (("cross_attention", "/encoder_attn/"), ("self_attention", "/self_attn/"), ("feed_forward", "/fc"),
         ("output_projection", "/lm_head/"))


def part_of(node_name: str) -> str:
    """The layer part an ONNX node of optimum's BART export belongs to, by its name."""
    for part, marker in PARTS:
        if marker in node_name:
            return part
    return "other"


def profiled_engine(hf_dir: Path, onnx_dir: Path, threads: int, profile_dir: Path, beam_search: bool = True):
    """The service's ONNX engine with ONNX Runtime's profiler on in its sessions."""
    import onnxruntime as ort

    from model_store.beam_search import GRAPH_FILE
    from serving.engines import session_options

    engine = plain_engine(hf_dir, onnx_dir, threads, beam_search)

    def options(name: str, spinning: bool):
        options = session_options(ort, threads, spinning, stop_spinning_after_run=True)
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_dir / name)
        return options

    if engine.search is not None:  # as the engine: spin-waiting inside a run, the generate() loop's not
        searches = engine.searches
        engine.search = searches.open(searches.graph_ngram, options(Path(GRAPH_FILE).stem, spinning=True))
    else:
        for part in (engine.model.encoder, engine.model.decoder):
            part.session = ort.InferenceSession(str(part.path), options(Path(part.path).stem, spinning=False),
                                                providers=["CPUExecutionProvider"])
    return engine


def plain_engine(hf_dir: Path, onnx_dir: Path, threads: int, beam_search: bool = True):
    """The service's ONNX engine, or (``beam_search`` False) its graphs under transformers' generate() loop."""
    from bench.generate_loop import GenerateLoopEngine
    from serving.engines import OnnxEngine

    kind = OnnxEngine if beam_search else GenerateLoopEngine
    return kind(hf_dir, "profile", threads=threads, onnx_dir=onnx_dir)


def node_seconds(session, since_ns: int) -> tuple[float, dict[str, float], float]:
    """(seconds in session runs, seconds per decoder layer part, seconds in encoder nodes) from a session's
    ONNX Runtime profile, counting only what started after ``since_ns`` (``time.time_ns()``, ONNX Runtime's
    clock: the warm-up is left out). In the BeamSearch graph, the encoder's nodes are those named "e/..."."""
    skip_us = (since_ns - session.get_profiling_start_time_ns()) / 1000
    runs, parts, encoder = 0.0, defaultdict(float), 0.0
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("ts", 0) < skip_us:
            continue
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            runs += event["dur"] / 1e6
        elif (event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
              and event["args"].get("op_name") not in ("If", "BeamSearch")):  # containers: counted inside
            if event["name"].startswith("e/"):
                encoder += event["dur"] / 1e6
            else:
                parts[part_of(event["name"])] += event["dur"] / 1e6
    return runs, dict(parts), encoder


def profile_batch(hf_dir: Path, onnx_dir: Path, texts: list[str], batch_size: int, warmup: list[str],
                  threads: int, plain_engine, beam_search: bool = True) -> dict:
    """All of ``texts``, ``batch_size`` dialogues per generate() call, profiled; then timed unprofiled."""
    from transformers import AutoConfig

    from serving.engines import default_settings
    from serving.protocol import GenerationJob

    settings = default_settings(hf_dir)
    config = AutoConfig.from_pretrained(hf_dir)
    calls = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    with tempfile.TemporaryDirectory() as tmp:
        engine = profiled_engine(hf_dir, onnx_dir, threads, Path(tmp), beam_search)
        now = time.time()
        groups = [engine.group(engine.encode([GenerationJob(text=t, settings=settings, enqueued_at=now)
                                              for t in call])) for call in calls]
        engine.summarize(warmup, settings)  # first runs allocate ONNX Runtime's arenas: not measured
        since = time.time_ns()
        t0 = time.perf_counter()
        results = [r for call in calls for r in engine.summarize(call, settings)]
        wall = time.perf_counter() - t0
        if engine.search is not None:  # one graph: encoder nodes, decoder nodes, the operator's C++ loop
            _, parts, enc_run = node_seconds(engine.search, since)
            dec_run = sum(parts.values())
        else:
            enc_run, _, _ = node_seconds(engine.model.encoder.session, since)
            dec_run, parts, _ = node_seconds(engine.model.decoder.session, since)
    # the profiler adds a fixed cost per operator call, which weighs most at batch 1: time without it too
    t0 = time.perf_counter()
    for call in calls:
        plain_engine.summarize(call, settings)
    unprofiled = time.perf_counter() - t0
    # bytes of cross-attention keys and values one decoding step of a call reads (its groups together)
    beams, layers, width = settings.num_beams, config.decoder_layers, config.d_model
    cross_bytes = [sum(len(g) * beams * layers * 2 * max(len(j.ids) for j in g) * width * 4 for g in call)
                   for call in groups]
    dec_parts = sum(parts.values()) or 1.0
    return {"batch_size": batch_size, "dialogues": len(texts), "calls": len(calls),
            "path": "BeamSearch operator" if engine.search is not None else "transformers generate()",
            "groups_first_call": [len(g) for g in groups[0]],
            "s_per_dialogue": round(unprofiled / len(texts), 4),
            "s_per_dialogue_profiled": round(wall / len(texts), 4),
            "encoder_share": round(enc_run / wall, 3), "decoder_share": round(dec_run / wall, 3),
            "generate_loop_share": round(max(0.0, wall - enc_run - dec_run) / wall, 3),
            "decoder_parts_share": {k: round(v / dec_parts, 3) for k, v in sorted(parts.items())},
            "cross_attention_bytes_per_step": round(sum(cross_bytes) / len(cross_bytes)),
            "cross_attention_mib_per_step": round(sum(cross_bytes) / len(cross_bytes) / 2**20, 1),
            "mean_output_tokens": round(sum(r.output_tokens for r in results) / len(results), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="stored model (default: $SUMMARIZER_MODEL or dialogue-bart-small:latest)")
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma list of dialogues per generate call")
    parser.add_argument("--dialogues", type=int, default=32,
                        help="dialogues run at every batch size (default 32; at least the largest size)")
    parser.add_argument("--generate-loop", action="store_true",
                        help="profile transformers' generate() loop around the ONNX graphs, not the BeamSearch "
                             "operator the service runs")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (default: all cores)")
    parser.add_argument("--out", help="results directory (default: bench/results)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--batch-sizes must be a comma list of integers, got {args.batch_sizes!r}")
    if not sizes or min(sizes) < 1:
        parser.error("--batch-sizes needs at least one size, each at least 1")

    from model_store.store import get_model
    from serving.config import DEFAULT_MODEL_NAME
    from serving.engines import HF_SUBDIR, ONNX_SUBDIR

    ref = args.model or os.environ.get("SUMMARIZER_MODEL") or f"{DEFAULT_MODEL_NAME}:latest"
    stored = get_model(ref if ":" in ref else ref + ":latest")
    threads = args.threads or (os.cpu_count() or 1)
    texts = load_dialogues(max(args.dialogues, max(sizes)) + 2, seed=2)
    texts, warmup = texts[:-2], texts[-2:]
    hf_dir, onnx_dir = Path(stored.path) / HF_SUBDIR, Path(stored.path) / ONNX_SUBDIR
    from serving.engines import default_settings

    plain = plain_engine(hf_dir, onnx_dir, threads, beam_search=not args.generate_loop)
    plain.summarize(warmup, default_settings(hf_dir))
    rows = []
    for size in sizes:
        row = profile_batch(hf_dir, onnx_dir, texts, size, warmup, threads, plain, not args.generate_loop)
        rows.append(row)
        print(f"batch {size}: {row['s_per_dialogue'] * 1000:.0f} ms/dialogue", file=sys.stderr, flush=True)
    results = {"created": now_iso(), "git": git_revision(), "command": "python -m bench.profile " + " ".join(
        sys.argv[1:] if argv is None else argv), "machine": machine_info(), "model": str(stored.tag),
        "threads": threads, "batches": rows}
    path = write_results("profile", results, args.out)
    print(render(results))
    print(f"\nresults: {path}")
    return 0


def render(results: dict) -> str:
    parts = [p for p, _ in PARTS] + ["other"]
    header = (["batch", "groups (first call)", "ms/dialogue", "encoder", "decoder", "loop"] + parts
              + ["cross K/V per step"])
    path = results["batches"][0]["path"] if results["batches"] else "?"
    lines = [f"{results['model']}, ONNX Runtime ({path}), {results['threads']} threads; decoder parts as "
             "shares of the decoder's operator time; 'loop': the rest of the wall time", " | ".join(header)]
    for row in results["batches"]:
        cells = [str(row["batch_size"]), "+".join(map(str, row["groups_first_call"])),
                 f"{row['s_per_dialogue'] * 1000:.0f}",
                 f"{row['encoder_share']:.0%}", f"{row['decoder_share']:.0%}", f"{row['generate_loop_share']:.0%}"]
        cells += [f"{row['decoder_parts_share'].get(p, 0.0):.0%}" for p in parts]
        cells.append(f"{row['cross_attention_mib_per_step']:.0f} MiB")
        lines.append(" | ".join(cells))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
