"""ROUGE regression suite command line: python -m eval --help

    python -m eval run      [--model TAG|DIR | --url URL] [--subset ci|full]   scores and a report
    python -m eval baseline [--model TAG|DIR] [--subset ci|full|all]           write eval/baselines/<model>.json
    python -m eval gate     [--model TAG|DIR | --url URL] [--subset ci|full]   exit 1 when the candidate regressed
    python -m eval bento    [--model TAG] [--subset ci|full]                   the gate, then `bentoml build`

Exit status: 0 passed (or done), 1 the gate failed (no Bento built), 2 the suite could not run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

EPILOG = """\
candidate: a BentoML model tag (default: $SUMMARIZER_MODEL, else dialogue-bart-small:latest), a stored layout
directory (hf/ + onnx/) or a Hugging Face directory (exported to ONNX once, cached), or --url of a running
service (end to end; the service's backend is compared with the baseline of that backend).
data: --data-dir or $SUMMARIZER_DATA_DIR (default ../shared/data). cache: .eval_cache/ or $SUMMARIZER_EVAL_CACHE.
reports: runs/eval/<time>-<model>-<subset>/report.md and report.json (or --report-dir).
"""


def _overrides(items: list[str]) -> dict:
    from serving.protocol import GenerationOptions

    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in GenerationOptions.model_fields:
            raise SystemExit(f"--set expects KEY=VALUE with KEY one of {', '.join(GenerationOptions.model_fields)}; "
                             f"got {item!r}")
        out[key] = float(value) if key == "length_penalty" else int(value)
    GenerationOptions(**out)  # validates ranges with the service's own messages
    return out


def _backends(value: str) -> tuple[str, ...]:
    from eval.generate import BACKENDS

    chosen = tuple(b.strip() for b in value.split(",") if b.strip())
    bad = [b for b in chosen if b not in BACKENDS]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(f"backends must be a comma list of {', '.join(BACKENDS)}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    from eval.gate import AGREEMENT_TOLERANCE, TOLERANCE

    parser = argparse.ArgumentParser(prog="python -m eval", description="ROUGE regression suite and the gate "
                                     "that guards building a Bento.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, url: bool = True, subsets=("ci", "full"), default_subset="ci") -> None:
        if url:
            where = p.add_mutually_exclusive_group()
            where.add_argument("--model", help="candidate: model tag or directory (default: the served model)")
            where.add_argument("--url", help="evaluate a running service end to end, e.g. http://127.0.0.1:3000")
        else:
            p.add_argument("--model", help="candidate: model tag (default: the served model)")
        p.add_argument("--name", help="model name for the baseline file (default: the tag's or directory's name)")
        p.add_argument("--subset", choices=subsets, default=default_subset,
                       help="'ci': a fixed seeded 100 + 100 dialogues; 'full': DialogSum test 500 + SAMSum "
                            "validation 818 (default: %(default)s)")
        p.add_argument("--limit", type=int, help="only the first N dialogues of each set (quick checks)")
        p.add_argument("--backends", type=_backends, default=("torch", "onnx"), help="comma list (default: torch,onnx)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="generation setting over the model's defaults, e.g. --set num_beams=2")
        p.add_argument("--data-dir", help="corpus directory (default: $SUMMARIZER_DATA_DIR or ../shared/data)")
        p.add_argument("--batch-size", type=int, default=16, help="dialogues per engine call (default: 16)")
        p.add_argument("--threads", type=int, default=1,
                       help="CPU threads per engine; 0 = all cores (default: 1, which is the fastest on a "
                            "busy machine and keeps timings comparable)")
        p.add_argument("--no-cache", action="store_true", help="generate everything again (and cache nothing)")
        p.add_argument("--cache-dir", help="summary cache (default: $SUMMARIZER_EVAL_CACHE or .eval_cache)")
        p.add_argument("--report-dir", help="write report.md/report.json here (default: runs/eval/<time>-...)")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def gating(p: argparse.ArgumentParser) -> None:
        p.add_argument("--baseline", help="baseline file (default: eval/baselines/<model-name>.json)")
        p.add_argument("--tolerance", type=float, help="allowed ROUGE-L drop in points (default: "
                       + ", ".join(f"{k} {v}" for k, v in TOLERANCE.items()) + ")")
        p.add_argument("--agreement-tolerance", type=float, default=AGREEMENT_TOLERANCE,
                       help="allowed ONNX-PyTorch ROUGE-L difference in points (default: %(default)s)")
        p.add_argument("--metric", dest="metrics", action="append", choices=("rouge1", "rouge2", "rougeL", "rougeLsum"),
                       help="gate on this metric (repeatable; default: rougeL)")

    p = sub.add_parser("run", help="evaluate a candidate (report with deltas when a baseline exists)")
    common(p)
    p.add_argument("--baseline", help="baseline to compare with (default: eval/baselines/<model-name>.json if any)")
    p = sub.add_parser("baseline", help="evaluate a known-good model and write its baseline")
    common(p, url=False, subsets=("ci", "full", "all"))
    p.add_argument("--out", help="baseline file (default: eval/baselines/<model-name>.json)")
    p = sub.add_parser("gate", help="exit 1 when the candidate fell below its baseline or its backends disagree")
    common(p)
    gating(p)
    p = sub.add_parser("bento", help="run the gate, then build the Bento with the scores as labels")
    common(p, url=False)
    gating(p)
    p.add_argument("--bentofile", default="bentofile.yaml", help="(default: %(default)s at the repository root)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from client import ClientError
    from eval.baseline import BaselineError
    from model_store.store import ModelNotFoundError

    try:
        return COMMANDS[args.command](args, argv)
    except (BaselineError, ClientError, ModelNotFoundError, FileNotFoundError, LookupError, RuntimeError,
            ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _options(args, subset: str | None = None, ids=None):
    from eval.suite import SuiteOptions

    return SuiteOptions(subset=subset or args.subset, backends=args.backends, limit=args.limit,
                        data_dir=args.data_dir, overrides=_overrides(args.overrides), batch_size=args.batch_size,
                        threads=args.threads, cache=not args.no_cache, cache_dir=args.cache_dir,
                        progress=not args.no_progress, ids=ids)


def _target(args):
    from eval.generate import resolve_candidate

    if getattr(args, "url", None):
        return args.url
    return resolve_candidate(args.model, args.name)


def _baseline_file(args, target) -> Path:
    from eval.baseline import baseline_path
    from eval.generate import ServiceGenerator

    if args.baseline:
        return Path(args.baseline)
    if isinstance(target, str):
        served = ServiceGenerator(target).info.get("model") or ""
        return baseline_path(args.name or served.split(":")[0])
    return baseline_path(args.name or target.gate_baseline or target.name)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_run(args, argv) -> int:
    from eval.baseline import Baseline
    from eval.gate import compare
    from eval.report import render_markdown, write_report
    from eval.suite import run_suite

    target = _target(args)
    path = _baseline_file(args, target)
    baseline = Baseline.load(path) if path.exists() else None
    has_subset = baseline is not None and args.subset in baseline.subsets()
    ids = baseline.ids(args.subset) if has_subset else None
    run = run_suite(target, _options(args, ids=ids), log=_log)
    # The same checks as the gate, shown as a comparison: `run` reports, only `gate` decides (and exits 1).
    comparison = compare(run, baseline) if has_subset else None
    directory = write_report(run, comparison, args.report_dir, verdict=False)
    print(render_markdown(run, comparison, console=True, verdict=False))
    print(f"report: {directory}/report.md (and report.json); {run.timing['total_s']:.0f} s")
    if baseline is None:
        print(f"no baseline at {path}: scores only (write one with `python -m eval baseline`)")
    elif not has_subset:
        print(f"{path} has no '{args.subset}' baseline: scores only")
    return 0


def cmd_baseline(args, argv) -> int:
    from eval.baseline import baseline_path, write_baseline
    from eval.gate import agreement
    from eval.report import render_markdown, write_report
    from eval.suite import run_suite

    target = _target(args)
    if set(args.backends) != {"torch", "onnx"}:
        _log("warning: a baseline without both backends cannot gate the missing one")
    path = Path(args.out) if args.out else baseline_path(target.name)
    for subset in (("ci", "full") if args.subset == "all" else (args.subset,)):
        run = run_suite(target, _options(args, subset=subset), log=_log)
        command = "python -m eval " + " ".join(a if a != "all" else subset for a in argv)
        write_baseline(run, path, command, agreement(run))
        directory = write_report(run, None, args.report_dir and Path(args.report_dir) / subset)
        print(render_markdown(run, None, console=True))
        print(f"baseline '{subset}' written to {path} (summaries in {path.stem}.{subset}.jsonl); "
              f"report {directory}/report.md; {run.timing['total_s']:.0f} s")
    return 0


def gate_run(args):
    """Evaluate the candidate on its baseline's dialogues and decide; returns (run, gate, report dir)."""
    from eval.baseline import Baseline
    from eval.gate import compare
    from eval.report import write_report
    from eval.suite import run_suite

    target = _target(args)
    baseline = Baseline.load(_baseline_file(args, target))
    baseline.entry(args.subset)  # fail early, before generating, when the subset has no baseline
    run = run_suite(target, _options(args, ids=baseline.ids(args.subset)), log=_log)
    gate = compare(run, baseline, args.subset, tolerance=args.tolerance,
                   agreement_tolerance=args.agreement_tolerance, metrics=tuple(args.metrics or ("rougeL",)))
    directory = write_report(run, gate, args.report_dir)
    return target, run, gate, directory


def cmd_gate(args, argv) -> int:
    _, run, gate, directory = gate_run(args)
    if not _report_verdict(run, gate, directory):
        return 1
    print("ROUGE-L gate passed")
    return 0


def _report_verdict(run, gate, directory, failed_suffix: str = "") -> bool:
    """Print the report and where it is; on failure, name what failed on stderr. True when the gate passed."""
    from eval.report import render_markdown

    print(render_markdown(run, gate, console=True))
    print(f"report: {directory}/report.md (and report.json); {run.timing['total_s']:.0f} s")
    if gate.passed:
        return True
    failed = "; ".join(f"{c.dataset}/{c.backend}/{c.metric}" for c in gate.failures())
    print(f"ROUGE-L gate FAILED ({failed}){failed_suffix}", file=sys.stderr)
    return False


def bento_labels(run, gate) -> dict[str, str]:
    """What every Bento says about its quality: ROUGE-L per set and backend, interval, delta, gate config."""
    from eval.datasets import SUITE_SETS

    labels = {"eval_gate": "passed" if gate.passed else "failed", "eval_subset": run.subset["name"],
              "eval_dialogues": ",".join(f"{SUITE_SETS.get(k, k)}={v}" for k, v in run.subset["sizes"].items()),
              "eval_metric": "rougeL_f1_stemmed_best_of_refs",
              "eval_tolerance": f"{gate.tolerance:.2f}", "eval_baseline": Path(gate.baseline_path).name,
              "eval_weights_sha256": (run.model.get("weights_sha256") or "")[:16]}
    for name, per_backend in run.results.items():
        short = SUITE_SETS.get(name, name)
        for backend, block in per_backend.items():
            rl = block["scores"]["rougeL"]
            labels[f"rougeL_{short}_{backend}"] = f"{rl['mean']:.2f}"
            labels[f"rougeL_{short}_{backend}_ci95"] = f"{rl['ci_low']:.2f}-{rl['ci_high']:.2f}"
            delta = gate.comparison.get(name, {}).get(backend, {}).get("rougeL", {}).get("delta")
            if delta is not None:
                labels[f"rougeL_{short}_{backend}_delta"] = f"{delta:+.2f}"
    return labels


# The stored model's labels that say what it learned from (training/finetune_feedback.py): the Bento repeats them.
LINEAGE_LABEL_PREFIXES = ("finetuned_", "feedback_")


def lineage_labels(target) -> dict[str, str]:
    return {k: v for k, v in target.labels.items() if k.startswith(LINEAGE_LABEL_PREFIXES)}


def cmd_bento(args, argv) -> int:
    import bentoml

    from eval.datasets import REPO_ROOT

    bentofile = Path(args.bentofile)
    if not bentofile.is_absolute():
        bentofile = REPO_ROOT / bentofile
    if not bentofile.exists():
        raise FileNotFoundError(f"{bentofile} not found: the Bento is built from it")
    if args.overrides:
        raise ValueError("--set changes what is evaluated but not what the Bento serves (the model's own "
                         "generation_config.json): change the model, or gate with `python -m eval gate --set ...`")
    target, run, gate, directory = gate_run(args)
    if not _report_verdict(run, gate, directory, failed_suffix=": no Bento built"):
        return 1
    if target.tag is None:
        raise ValueError("a Bento packs a model from BentoML's store: pass --model as a tag, "
                         "e.g. `python -m model_store import <dir> --name NAME` first")
    labels = {**bento_labels(run, gate), **lineage_labels(target)}
    # The service picks its model from SUMMARIZER_MODEL: pin the exact version that passed the gate.
    os.environ["SUMMARIZER_MODEL"] = target.tag
    started = time.perf_counter()
    # reload: a service module imported earlier in this process would still hold the previous model.
    bento = bentoml.bentos.build_bentofile(str(bentofile), labels=labels, build_ctx=str(REPO_ROOT), reload=True)
    print(f"ROUGE-L gate passed; built Bento {bento.tag} with model {target.tag} in "
          f"{time.perf_counter() - started:.0f} s")
    for key, value in sorted(labels.items()):
        print(f"  {key}={value}")
    return 0


COMMANDS = {"run": cmd_run, "baseline": cmd_baseline, "gate": cmd_gate, "bento": cmd_bento}

if __name__ == "__main__":
    sys.exit(main())
