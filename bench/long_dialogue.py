"""Long dialogues: ROUGE-L of reading them in windows (serving/long_dialogue.py) against plain truncation.

    python -m bench.long_dialogue                  # k = 2, 4, 8; 40 long dialogues each; other windows at k = 4
    python -m bench.long_dialogue --n 10 --ks 4 --window 256 --windows
    python -m bench.long_dialogue --eval-set dialogsum_validation --ks 1 2 --from-tokens 256 384 512 --cost-chars
                                                   # SUMMARIZER_LONG_FROM_TOKENS chosen on validation

A long dialogue joins k DialogSum test dialogues (a fixed seed picks them; no dialogue twice in one); its
references are theirs joined in the same order (DialogSum test has three per dialogue: the r-th long reference
joins the r-th ones; the score is the best of the three, as in the suite). ``--eval-set dialogsum_validation``
joins validation dialogues instead (one reference each), to choose settings on other dialogues than the ones
the figures are reported on. Every variant is the service's own
``LongDialogues`` generation over ONNX Runtime's engine of the served model (``OnnxEngine``, as the ONNX
backend runs it), through the service's ``Router``; only the HTTP hop is left out:

    truncation        every dialogue one job, cut to the model's context (SUMMARIZER_LONG_DIALOGUES=false)
    windows W from F  a dialogue longer than F tokens (SUMMARIZER_LONG_FROM_TOKENS) in windows of at most W
                      tokens, the window summaries joined (the service's combination); a shorter one whole;
                      the service's window and threshold at every k, the other windows (--windows) at k = 4
                      only, the other thresholds (--from-tokens) at every k with the service's window
    re-summarized W   the same, then the join summarized again (what "combine" could mean instead), at k = 4
    known ends        the service's windows and threshold, cut where each joined dialogue really ends (a
                      boundary model that knows the answer, in place of serving/conversation_boundaries.py's):
                      what a perfect boundary model would give within the service's window size
    each whole        the ceiling of any way of cutting: each of the k dialogues summarized on its own, whole
                      (cut exactly where one conversation ends, which the service cannot know), the summaries
                      joined; what is left between it and a target is the model's, not the cutting's

Scores are ROUGE-L F1 x100 (eval/rouge.py), with the paired bootstrap 95 % interval of the difference to
truncation. Writes bench/results/long_dialogue-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import busy_warning, fmt, log, machine_info, now_iso, write_results

SEED = 14
DEFAULT_KS = (2, 4, 8)
DEFAULT_WINDOWS = (160, 192, 256, 512)
EVAL_SETS = ("dialogsum_test", "dialogsum_validation")
DEFAULT_EVAL_SET = "dialogsum_test"  # the README's figures; validation is for choosing settings
EACH_WHOLE = "each whole (ceiling)"
KNOWN_ENDS = "known ends (oracle)"
REQUEST_ITEMS = 8  # long dialogues per flow call, as one /summarize_batch request of 8


@dataclass(frozen=True)
class LongDialogue:
    text: str  # the k dialogues, one after the other
    references: list[str]  # theirs joined, in the same order
    parts: list[str]  # the k dialogues


def long_dialogues(k: int, n: int, seed: int = SEED, data_dir: str | None = None,
                   eval_set: str = DEFAULT_EVAL_SET) -> list[LongDialogue]:
    """``n`` long dialogues, each joining ``k`` distinct dialogues of ``eval_set``."""
    from eval.datasets import load_eval_set

    examples = load_eval_set(eval_set, data_dir)
    rng = random.Random(f"{seed}-{k}")
    out = []
    for _ in range(n):
        chosen = rng.sample(examples, k)
        references = min(len(ex.references) for ex in chosen)
        parts = [ex.dialogue.strip() for ex in chosen]
        out.append(LongDialogue("\n".join(parts),
                                [" ".join(ex.references[r].strip() for ex in chosen) for r in range(references)],
                                parts))
    return out


def engine_router(engine):
    """The service's Router over the engine in this process (a thread per call, as a backend worker's)."""
    from serving.protocol import BackendName, GenerationOutcome
    from serving.routing import Backend, Router

    async def call(jobs):
        return [GenerationOutcome(result=r) for r in await asyncio.to_thread(engine.generate, jobs)]

    return Router(Backend(BackendName.ONNX, call), None, primary_timeout_s=3600.0, deadline_s=3600.0)


def each_whole(engine, router, longs: Sequence[LongDialogue]) -> tuple[list, float]:
    """Each long dialogue's parts summarized whole (one job each, as the service reads a single
    conversation), their summaries joined as the service joins window summaries: the ceiling of cutting."""
    from serving.long_dialogue import join_summaries
    from serving.protocol import LongDialogueInfo

    parts, seconds = run_variant(engine, router, [part for long in longs for part in long.parts], None)
    summaries, at = [], 0
    for long in longs:
        mine, at = parts[at:at + len(long.parts)], at + len(long.parts)
        output_tokens = sum(s.output_tokens for s in mine)
        # described as the service describes a windowed dialogue: each part is one window, one generation
        info = (LongDialogueInfo(windows=len(mine), rounds=1, window_tokens=max(s.input_tokens for s in mine),
                                 generations=len(mine), generated_tokens=output_tokens)
                if len(mine) > 1 else None)
        summaries.append(mine[0].model_copy(update={
            "summary": join_summaries(mine), "input_tokens": sum(s.input_tokens for s in mine),
            "output_tokens": output_tokens, "truncated": any(s.truncated for s in mine), "long_dialogue": info}))
    return summaries, seconds


class KnownEnds:
    """A boundary model that knows where each joined dialogue ends: log-odds far above the service's cut
    threshold at every true start, far below it elsewhere (a window is then cut inside a conversation only where
    it must end to fit, as the service does)."""

    def __init__(self, longs: Sequence[LongDialogue]) -> None:
        from training.boundaries import join_dialogues  # the boundaries the boundary model learns from

        self.starts: dict[tuple[str, ...], set[int]] = {}
        for long in longs:
            turns, starts = join_dialogues(long.parts)
            self.starts[self._key(turns)] = starts

    @staticmethod
    def _key(turns: Sequence[str]) -> tuple[str, ...]:
        return tuple(turn[:24] for turn in turns)  # the splitter rebuilds a long turn from its pieces

    def log_odds(self, turns: Sequence[str]) -> list[float]:
        starts = self.starts[self._key(turns)]
        return [0.0] + [8.0 if gap in starts else -6.0 for gap in range(1, len(turns))]


def run_variant(engine, router, dialogues: Sequence[str], settings, boundaries=None) -> tuple[list, float]:
    """Summaries of ``dialogues`` through LongDialogues (``settings`` None: truncation), and the seconds taken;
    ``boundaries``: another boundary model than the shipped one."""
    from serving.flow import Call, Item
    from serving.long_dialogue import LongDialogues

    generation = LongDialogues(router, engine.tokenizer, settings, engine.context)
    if boundaries is not None:
        generation.splitter.boundaries = boundaries
    call = Call(engine.model_tag, engine.defaults, "/summarize_batch")
    summaries = []
    started = time.perf_counter()
    for start in range(0, len(dialogues), REQUEST_ITEMS):
        items = [Item(d) for d in dialogues[start:start + REQUEST_ITEMS]]
        asyncio.run(generation(items, call))
        summaries.extend(item.summary for item in items)
    return summaries, time.perf_counter() - started


def meeting(chars: int, data_dir: str | None = None, eval_set: str = DEFAULT_EVAL_SET) -> str:
    """Dialogues of ``eval_set`` one after the other, whole ones only, up to ``chars`` characters."""
    from eval.datasets import load_eval_set

    text = ""
    for example in load_eval_set(eval_set, data_dir):
        if len(text) + len(example.dialogue) + 1 > chars:
            return text.rstrip("\n")
        text += example.dialogue.strip() + "\n"
    return text.rstrip("\n")


def cost(engine, router, settings, sizes: Sequence[int], data_dir: str | None = None,
         eval_set: str = DEFAULT_EVAL_SET) -> list[dict]:
    """One long dialogue of each size (characters), as one request: windows, generations, seconds."""
    rows = []
    for chars in sizes:
        dialogue = meeting(chars, data_dir, eval_set)
        for name, chosen in (("truncation", None), (f"windows {settings.window_tokens}", settings)):
            [summary], seconds = run_variant(engine, router, [dialogue], chosen)
            info = summary.long_dialogue
            rows.append({"chars": len(dialogue), "tokens": len(engine.tokenizer.encode([dialogue])[0]),
                         "variant": name, "windows": info.windows if info else 1,
                         "generations": info.generations if info else 1, "summary_tokens": summary.output_tokens,
                         "truncated": summary.truncated, "seconds": seconds})
    return rows


def score(summaries, references) -> list[float]:
    from eval.rouge import score_one

    return [score_one(s.summary, refs)["rougeL"] for s, refs in zip(summaries, references)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.long_dialogue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="long dialogues per k (default %(default)s)")
    parser.add_argument("--ks", type=int, nargs="+", default=list(DEFAULT_KS), help="dialogues joined into one")
    parser.add_argument("--window", type=int, default=None,
                        help="the window measured at every k (default: the service's, SUMMARIZER_LONG_WINDOW_TOKENS)")
    parser.add_argument("--sweep-k", type=int, default=4, help="the k at which the other windows are measured")
    parser.add_argument("--windows", type=int, nargs="*", default=list(DEFAULT_WINDOWS),
                        help="window sizes (tokens) measured at --sweep-k")
    parser.add_argument("--from-tokens", type=int, nargs="*", default=[],
                        help="thresholds (SUMMARIZER_LONG_FROM_TOKENS) measured at every k besides the service's, "
                             "with the service's window")
    parser.add_argument("--eval-set", choices=EVAL_SETS, default=DEFAULT_EVAL_SET,
                        help="the dialogues joined (default %(default)s; validation to choose settings)")
    parser.add_argument("--resummarize", type=int, nargs="*", default=None,
                        help="window sizes measured at --sweep-k with the join summarized again (default: --window)")
    parser.add_argument("--cost-chars", type=int, nargs="*", default=[15_000, 20_000],
                        help="sizes (characters) of the long meetings whose cost is measured, one request each "
                             "(none: no cost measured)")
    parser.add_argument("--model", default=None, help="stored model tag or directory (default: the served one)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: one per core)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="results directory (default bench/results)")
    args = parser.parse_args(argv)

    from eval.generate import resolve_candidate
    from eval.rouge import bootstrap_ci
    from serving.config import ServingConfig
    from serving.engines import OnnxEngine
    from serving.long_dialogue import LongDialogueSettings

    warning = busy_warning()
    candidate = resolve_candidate(args.model)
    engine = OnnxEngine(candidate.hf_dir, candidate.tag or candidate.ref, threads=args.threads,
                        onnx_dir=candidate.onnx_dir)
    router = engine_router(engine)
    config = ServingConfig.load()
    window = args.window or config.long_window_tokens
    service = LongDialogueSettings(window_tokens=window, long_from_tokens=config.long_from_tokens,
                                   summary_tokens=config.long_summary_tokens,
                                   max_rounds=config.long_max_rounds)
    resummarize = [window] if args.resummarize is None else args.resummarize
    rows = []
    long_from = config.long_from_tokens
    for k in args.ks:
        variants = [("truncation", None), (f"windows {window} from {long_from}", service)]
        variants += [(f"windows {window} from {f}", LongDialogueSettings(
            window_tokens=window, long_from_tokens=f, summary_tokens=config.long_summary_tokens,
            max_rounds=config.long_max_rounds)) for f in args.from_tokens if f != long_from]
        if k == args.sweep_k:
            variants += [(f"windows {w}", LongDialogueSettings(window_tokens=w,
                                                               long_from_tokens=config.long_from_tokens))
                         for w in args.windows if w != window]
            # summary_tokens 16: every join is longer, so it is summarized again (one more round at most)
            variants += [(f"re-summarized {w}", LongDialogueSettings(window_tokens=w, summary_tokens=16,
                                                                      max_rounds=2)) for w in resummarize]
        variants += [(KNOWN_ENDS, service), (EACH_WHOLE, None)]
        longs = long_dialogues(k, args.n, data_dir=args.data_dir, eval_set=args.eval_set)
        dialogues, references = [long.text for long in longs], [long.references for long in longs]
        tokens = [len(ids) for ids in engine.tokenizer.encode(dialogues)]
        baseline = None
        for name, settings in variants:
            log(f"k={k} {name}: {len(dialogues)} long dialogues")
            summaries, seconds = (each_whole(engine, router, longs) if name == EACH_WHOLE
                                  else run_variant(engine, router, dialogues, settings,
                                                   KnownEnds(longs) if name == KNOWN_ENDS else None))
            scores = score(summaries, references)
            info = [s.long_dialogue for s in summaries]
            row = {"k": k, "variant": name, "window_tokens": settings.window_tokens if settings else None,
                   "long_from_tokens": settings.long_from_tokens if settings else None,
                   "dialogues": len(dialogues), "dialogue_tokens_mean": sum(tokens) / len(tokens),
                   "rougeL": sum(scores) / len(scores),
                   "truncated_share": sum(s.truncated for s in summaries) / len(summaries),
                   "long_share": sum(i is not None for i in info) / len(info),
                   "windows_mean": sum(i.windows if i else 1 for i in info) / len(info),
                   "rounds_mean": sum(i.rounds if i else 1 for i in info) / len(info),
                   "generations": sum(i.generations if i else 1 for i in info),
                   "summary_tokens_mean": sum(s.output_tokens for s in summaries) / len(summaries),
                   "seconds": seconds, "per_dialogue": scores}
            if baseline is None:
                baseline = scores
            else:
                diffs = [a - b for a, b in zip(scores, baseline)]
                row["vs_truncation"] = sum(diffs) / len(diffs)
                row["vs_truncation_ci95"] = bootstrap_ci(diffs)
            rows.append(row)
    if args.cost_chars:
        log("cost: one long meeting per size, as one request")
    costs = cost(engine, router, service, args.cost_chars, args.data_dir, args.eval_set)
    report = {"benchmark": "long_dialogue", "started": now_iso(), "model": candidate.tag or candidate.ref,
              "engine": str(engine.engine), "context_tokens": engine.context, "seed": SEED, "n": args.n,
              "ks": args.ks, "eval_set": args.eval_set, "window_tokens": window,
              "long_from_tokens": long_from, "sweep_k": args.sweep_k,
              "generation": engine.defaults.model_dump(), "machine": machine_info(),
              "busy_warning": warning, "rows": rows, "cost": costs}
    path = write_results("long_dialogue", report, args.out)
    print(render(report))
    print(f"\nresults: {path}")
    return 0


def render(report: dict) -> str:
    lines = [f"Long dialogues: {report['n']} per k, joined {report.get('eval_set', DEFAULT_EVAL_SET)} dialogues, "
             f"{report['model']} "
             f"({report['engine']}, context {report['context_tokens']}); ROUGE-L F1 x100",
             "", f"{'k':>2}  {'variant':<22} {'tokens':>6} {'ROUGE-L':>7} {'vs trunc. (95% CI)':>22} "
             f"{'windows':>7} {'rounds':>6} {'sum.tok':>7} {'trunc.':>6} {'s':>6}"]
    for row in report["rows"]:
        delta = "" if "vs_truncation" not in row else (
            f"{row['vs_truncation']:+.1f} ({row['vs_truncation_ci95'][0]:+.1f}, {row['vs_truncation_ci95'][1]:+.1f})")
        lines.append(f"{row['k']:>2}  {row['variant']:<22} {row['dialogue_tokens_mean']:>6.0f} {row['rougeL']:>7.2f} "
                     f"{delta:>22} {row['windows_mean']:>7.1f} {row['rounds_mean']:>6.2f} "
                     f"{row['summary_tokens_mean']:>7.0f} {row['truncated_share']:>6.0%} {fmt(row['seconds'], 1):>6}")
    if report.get("cost"):
        lines += ["", "Cost of one long meeting (one request):", "",
                  f"{'chars':>6} {'tokens':>6}  {'variant':<12} {'windows':>7} {'generations':>11} {'sum.tok':>7} "
                  f"{'trunc.':>6} {'s':>6}"]
        for row in report["cost"]:
            lines.append(f"{row['chars']:>6} {row['tokens']:>6}  {row['variant']:<12} {row['windows']:>7} "
                         f"{row['generations']:>11} {row['summary_tokens']:>7} {str(row['truncated']).lower():>6} "
                         f"{row['seconds']:>6.1f}")
    if report.get("busy_warning"):
        lines += ["", "warning: " + report["busy_warning"]]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
