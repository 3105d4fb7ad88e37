"""Summarize dialogue files against a running service.

    python -m client meeting.txt chat.txt                 # one dialogue per .txt file
    python -m client dialogues.jsonl --url http://host:3000 --json   # JSON Lines with a "dialogue" field

Sends the dialogues in batches of at most --batch (the service's list endpoint) and prints one summary
per dialogue, or one JSON object per line with --json; a summary made from windows (a dialogue longer
than the model reads at once) or of a truncated dialogue says so in brackets after it. When the service
requires API keys, the key is read from the SUMMARIZER_API_KEY environment variable (never from the
command line: it would show in ``ps`` and the shell's history). Exit status: 0 done, 2 a file, a setting
or the service failed (one line on stderr says which and why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from client import wire
from client.errors import ClientError
from client.sync import SummarizerClient
from serving.protocol import GenerationOptions, Summary

# GenerationOptions field -> how the command line takes it.
SETTINGS = {"num_beams": int, "max_new_tokens": int, "min_new_tokens": int, "length_penalty": float,
            "no_repeat_ngram_size": int}


def read_dialogues(paths: list[str]) -> list[tuple[str, str]]:
    """(name, dialogue) pairs: a .jsonl file gives one per line, any other file is one dialogue."""
    items = []
    for raw in paths:
        path = Path(raw)
        if path.suffix != ".jsonl":
            items.append((path.name, path.read_text(encoding="utf-8")))
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                items.append((f"{path.name}:{row.get('id', n)}", row["dialogue"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ValueError(f"{path}:{n}: expected a JSON object with a \"dialogue\" field, e.g. "
                                 '{"id": "d1", "dialogue": "Tom: Lunch at 12?\\nAnna: OK"}') from None
    return items


def how_it_was_read(summary: Summary) -> list[str]:
    """What a reader of the text output must know about how much of the dialogue the summary covers."""
    notes = []
    if summary.long_dialogue is not None:
        long = summary.long_dialogue
        note = f"long dialogue: summarized in {long.windows} windows of up to {long.window_tokens} tokens"
        if long.rounds > 1:
            note += f", the joined summaries summarized again ({long.rounds - 1}x)"
        notes.append(note)
    if summary.truncated:
        notes.append(f"truncated: only the first {summary.input_tokens} tokens of the dialogue were read")
    return notes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__.split("\n\n")[0],
                                     epilog=f"API key: the {wire.API_KEY_ENV} environment variable, when the "
                                            "service requires one.")
    parser.add_argument("files", nargs="+", help=".txt (one dialogue) or .jsonl (field 'dialogue') files")
    parser.add_argument("--url", default=wire.DEFAULT_URL, help="service URL (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=16, help="dialogues per request (1 to the service's limit)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each answer")
    parser.add_argument("--json", action="store_true", help="print one JSON object per dialogue")
    for field, kind in SETTINGS.items():
        parser.add_argument("--" + field.replace("_", "-"), dest=field, type=kind,
                            help=f"override the model's {field} for these requests")
    return parser


def generation_options(args: argparse.Namespace) -> GenerationOptions | None:
    chosen = {field: getattr(args, field) for field in SETTINGS if getattr(args, field) is not None}
    return GenerationOptions(**chosen) if chosen else None


def summarize_files(args: argparse.Namespace, generation: GenerationOptions | None) -> None:
    items = read_dialogues(args.files)
    with SummarizerClient(args.url, timeout_s=args.timeout) as summarizer:
        for start in range(0, len(items), args.batch):
            chunk = items[start:start + args.batch]
            batch = summarizer.summarize_batch([dialogue for _, dialogue in chunk], generation)
            for (name, _), summary in zip(chunk, batch.summaries):
                if args.json:
                    print(json.dumps({"name": name, **summary.model_dump(mode="json")}), flush=True)
                else:
                    notes = how_it_was_read(summary)
                    print(f"{name}: {summary.summary}" + (f" [{'; '.join(notes)}]" if notes else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1, e.g. --batch 16")
    try:
        generation = generation_options(args)
    except ValidationError as exc:
        print(f"error: generation setting out of range: {wire.describe_errors(exc.errors())}", file=sys.stderr)
        return 2
    try:
        summarize_files(args, generation)
    except (ClientError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
