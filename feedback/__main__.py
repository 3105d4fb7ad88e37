"""python -m feedback export|prune: the feedback store from the command line (the service's settings).

    python -m feedback export --out feedback.jsonl [--since 2026-11-01] [--until ...] [--rating good|bad]
                              [--source corrected|accepted] [--model TAG]
    python -m feedback prune [--older-than-days N]

The store is the one the service uses with the same SUMMARIZER_FEEDBACK_URL / SUMMARIZER_FEEDBACK_PATH (and
BENTOML_HOME); ``--path`` or ``--url`` name another. ``export`` prints the number of pairs, the file's sha256
and what was skipped and why (on stderr when the pairs go to stdout).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

from feedback import open_store
from feedback.export import ACCEPTED, CORRECTED, export
from feedback.store import PostgresStore, SQLiteStore, StoreUnavailable
from serving.config import ConfigError, ServingConfig


def _moment(value: str) -> float:
    """An ISO date or date-time (UTC unless it says otherwise) as Unix time."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO date or date-time, e.g. 2026-11-01 or "
                                         "2026-11-01T08:00:00+01:00") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedback", description=__doc__.split("\n\n")[0])
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--path", help="a SQLite feedback file (default: the service's SUMMARIZER_FEEDBACK_PATH)")
    where.add_argument("--url", help="a postgresql:// URL (default: the service's SUMMARIZER_FEEDBACK_URL)")
    commands = parser.add_subparsers(dest="command", required=True)
    out = commands.add_parser("export", parents=[where], help="rated answers as JSONL fine-tuning pairs")
    out.add_argument("--out", help="the JSONL file to write (default: stdout)")
    out.add_argument("--since", type=_moment, default=0.0, help="feedback given at or after this (ISO, UTC)")
    out.add_argument("--until", type=_moment, default=float("inf"), help="feedback given before this (ISO, UTC)")
    out.add_argument("--rating", choices=["good", "bad"], help="only feedback with this rating")
    out.add_argument("--source", choices=[CORRECTED, ACCEPTED], help="only corrected or only accepted summaries")
    out.add_argument("--model", help="only answers of this model tag, e.g. dialogue-bart-small:abc123")
    prune = commands.add_parser("prune", parents=[where], help="delete answers past the retention now")
    prune.add_argument("--older-than-days", type=float, help="default: SUMMARIZER_FEEDBACK_RETENTION_DAYS")
    args = parser.parse_args(argv)

    try:
        config = ServingConfig.load()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    store = PostgresStore(args.url) if args.url else SQLiteStore(args.path) if args.path else open_store(config)
    if isinstance(store, SQLiteStore) and not store.path.exists():
        print(f"error: no feedback store at {store.path} (SUMMARIZER_FEEDBACK_PATH, --path); the service creates "
              "it at its first answer", file=sys.stderr)
        return 1
    try:
        if args.command == "export":
            report = export(store, args.out, since=args.since, until=args.until, rating=args.rating,
                            model=args.model, source=args.source)
            print("\n".join(report.lines()), file=sys.stdout if args.out else sys.stderr)
            return 0
        days = args.older_than_days if args.older_than_days is not None else config.feedback_retention_days
        if not days:
            print("nothing pruned: the retention is 0 (keep forever); pass --older-than-days N", file=sys.stderr)
            return 0
        deleted = store.prune(time.time() - days * 86_400)
        print(f"deleted {deleted} answers (and their feedback) older than {days:g} days")
        return 0
    except StoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
