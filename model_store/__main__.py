"""Model store command line: python -m model_store --help

    python -m model_store import ./my-finetune --name meeting-bart --label team=support
    python -m model_store list | show TAG | verify TAG
    python -m model_store quantize TAG          (python -m model_store quantize --help)

Progress goes to stderr, one line per step; the result (the stored tag and its directory in the store) is
the last line on stdout. Exit status: 0 done, 1 verify found changed or missing files, 2 no such model or
source directory (one line on stderr says which and how to import it).
"""

from __future__ import annotations

import argparse
import json
import sys

from model_store.layout import DEFAULT_MODEL_NAME


def _labels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--label expects KEY=VALUE (e.g. --label team=support), got {item!r}")
        out[key] = value
    return out


def _progress(line: str) -> None:
    """One short line per step, on stderr: the result line on stdout stays the last thing printed."""
    print(line, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_store",
                                     description="Put dialogue summarizers into BentoML's model store.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="import from a Hugging Face id (online) or a local directory")
    p.add_argument("source", help="e.g. facebook/bart-large-cnn, or a directory with config.json")
    p.add_argument("--name", required=True, help="model name in the store (e.g. bart-large-cnn)")
    p.add_argument("--revision", help="hub revision (branch, tag or commit)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export (no CPU fallback backend)")

    p = sub.add_parser("import-default", help=f"import the shipped default model as {DEFAULT_MODEL_NAME}")
    p.add_argument("--force", action="store_true", help="import again even if an identical one is stored")

    p = sub.add_parser("tiny", help="build a tiny random BART (real BART tokenizer) into a directory, for tests")
    p.add_argument("dest")

    sub.add_parser("list", help="list stored summarizers")
    p = sub.add_parser("show", help="show a stored model's labels and metadata")
    p.add_argument("tag")
    p = sub.add_parser("verify", help="re-check a stored model's files against their sha256")
    p.add_argument("tag")

    sub.add_parser("quantize", add_help=False,
                   help="store a dynamically quantized int8 copy of a stored model's ONNX export "
                        "(python -m model_store quantize --help)")
    return parser


def list_summarizers() -> None:
    import bentoml

    rows = [m for m in bentoml.models.list() if m.info.labels.get("task") == "summarization"]
    if not rows:
        print("no summarizers stored; run `python -m model_store import-default`")
        return
    print(f"{'tag':45} {'params':>9}  {'source':11} from")
    for m in rows:
        meta = m.info.metadata
        origin = f"int8 of {meta['quantized_from']}" if meta.get("quantized_from") else meta.get("source", "")
        if meta.get("feedback"):
            origin = (f"{meta['finetuned_from']} + {meta['feedback'].get('pairs')} feedback pairs "
                      f"(export {meta['feedback'].get('export_sha256', '')[:12]})")
        print(f"{str(m.tag):45} {meta.get('parameters', 0) / 1e6:8.1f}M  {m.info.labels.get('source', '?'):11} "
              f"{origin}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["quantize"]:
        from model_store.quantize import main as quantize_main
        return quantize_main(argv[1:])
    args = build_parser().parse_args(argv)
    from model_store import store

    if args.command == "import":
        result = store.import_model(args.source, args.name, labels=_labels(args.label), revision=args.revision,
                                    onnx=not args.no_onnx, progress=_progress)
        print(f"stored {result.tag} ({len(result.files)} files) at {result.path}")
    elif args.command == "import-default":
        print(f"default model: {store.import_default(if_missing=not args.force)}")
    elif args.command == "tiny":
        from model_store.tiny import build_tiny_bart
        print(build_tiny_bart(args.dest))
    elif args.command == "list":
        list_summarizers()
    elif args.command == "show":
        m = store.get_model(args.tag)
        print(json.dumps({"tag": str(m.tag), "path": str(m.path), "labels": m.info.labels,
                          "metadata": m.info.metadata}, indent=2, default=str))
    elif args.command == "verify":
        bad = store.verify(args.tag)
        print(f"{args.tag}: all files match their sha256" if not bad else
              f"{args.tag}: changed or missing: {', '.join(bad)}")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # one readable line for operators, not a traceback
        from model_store.store import ModelNotFoundError
        if isinstance(exc, (ModelNotFoundError, FileNotFoundError)):
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        raise
