"""Summarize dialogue files against a running service.

    python -m client meeting.txt chat.txt                 # one dialogue per .txt file
    python -m client dialogues.jsonl --url http://host:3000 --json   # JSON Lines with a "dialogue" field

Sends the dialogues in batches of at most --batch (the service's list endpoint) and prints one summary
per dialogue, or one JSON object per line with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_dialogues(paths: list[str]) -> list[tuple[str, str]]:
    """(name, dialogue) pairs: a .jsonl file gives one per line, any other file is one dialogue."""
    items = []
    for raw in paths:
        path = Path(raw)
        if path.suffix == ".jsonl":
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    items.append((f"{path.name}:{row.get('id', n)}", row["dialogue"]))
        else:
            items.append((path.name, path.read_text(encoding="utf-8")))
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help=".txt (one dialogue) or .jsonl (field 'dialogue') files")
    parser.add_argument("--url", default="http://localhost:3000", help="service URL")
    parser.add_argument("--batch", type=int, default=16, help="dialogues per request (1 to the service's limit)")
    parser.add_argument("--num-beams", type=int, help="override the model's beam count")
    parser.add_argument("--max-new-tokens", type=int, help="override the summary length limit")
    parser.add_argument("--json", action="store_true", help="print one JSON object per dialogue")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")

    import bentoml

    generation = {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens))
                  if v is not None} or None
    items = read_dialogues(args.files)
    with bentoml.SyncHTTPClient(args.url) as client:
        for start in range(0, len(items), args.batch):
            chunk = items[start:start + args.batch]
            # BentoML's client cannot send an explicit None for an optional model: leave it out instead.
            extra = {"generation": generation} if generation else {}
            response = client.summarize_batch(dialogues=[d for _, d in chunk], **extra)
            for (name, _), summary in zip(chunk, response["summaries"]):
                if args.json:
                    print(json.dumps({"name": name, **summary}))
                else:
                    print(f"{name}: {summary['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
