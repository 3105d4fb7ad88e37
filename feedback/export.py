"""Rated answers as fine-tuning pairs: one JSON object per line (the format the fine-tuning loop reads).

    {"dialogue": str, "summary": str, "request_id": str, "rating": "good"|"bad", "model": str,
     "source": "corrected"|"accepted", "feedback_at": "2026-12-02T17:40:00+00:00"}

``summary`` is the corrected summary when the reviewer gave one (``source: corrected``, whatever the rating),
else the model's own summary when it was rated good (``source: accepted``). An answer rated bad without a
correction teaches nothing and is left out; so is one whose dialogue text was not kept (retention was off
when it was answered): the report says how many of each. Lines are in the order the feedback was given, so
the same store and filters give the same file, byte for byte, and the same sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterable, Iterator

from feedback.store import FeedbackStore, Rated

CORRECTED, ACCEPTED = "corrected", "accepted"
NO_TEXT = "no_text"
BAD_UNCORRECTED = "bad_uncorrected"
SKIP_REASONS = {
    NO_TEXT: "their dialogue (or, for an accepted summary, the summary) text was not kept: retention was off when "
             "they were answered (SUMMARIZER_FEEDBACK_RETAIN_TEXT=true keeps it for new answers)",
    BAD_UNCORRECTED: "rated bad without a corrected summary: nothing to learn from",
}


@dataclass
class ExportReport:
    count: int = 0
    sha256: str = hashlib.sha256(b"").hexdigest()
    sources: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # by reason (SKIP_REASONS' keys)
    path: str | None = None

    def lines(self) -> list[str]:
        where = f" to {self.path}" if self.path else ""
        kinds = ", ".join(f"{n} {source}" for source, n in sorted(self.sources.items()))
        said = [f"exported {self.count} pairs{where}" + (f" ({kinds})" if kinds else ""), f"sha256 {self.sha256}"]
        said += [f"skipped {n}: {SKIP_REASONS[reason]}" for reason, n in sorted(self.skipped.items())]
        return said


def pair(rated: Rated) -> tuple[dict | None, str | None]:
    """(the JSONL object, None) for a rated answer that makes a pair, else (None, the reason it does not)."""
    answer, given = rated.answer, rated.feedback
    if given.corrected_summary is not None:
        summary, source = given.corrected_summary, CORRECTED
    elif given.rating == "good":
        summary, source = answer.summary, ACCEPTED
    else:
        return None, BAD_UNCORRECTED
    if answer.dialogue is None or summary is None:
        return None, NO_TEXT
    return {"dialogue": answer.dialogue, "summary": summary, "request_id": answer.request_id,
            "rating": given.rating, "model": answer.model, "source": source,
            "feedback_at": datetime.fromtimestamp(given.created_at, timezone.utc).isoformat(timespec="seconds")}, None


def pairs(rated: Iterable[Rated], report: ExportReport, *, rating: str | None = None, model: str | None = None,
          source: str | None = None) -> Iterator[dict]:
    for item in rated:
        if (rating and item.feedback.rating != rating) or (model and item.answer.model != model):
            continue
        made, reason = pair(item)
        if made is None:
            if source is None or reason == NO_TEXT:
                report.skipped[reason] += 1
            continue
        if source and made["source"] != source:
            continue
        yield made


def write(objects: Iterable[dict], out: IO[bytes], report: ExportReport) -> ExportReport:
    digest = hashlib.sha256()
    for obj in objects:
        line = (json.dumps(obj, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
        digest.update(line)
        out.write(line)
        report.count += 1
        report.sources[obj["source"]] += 1
    report.sha256 = digest.hexdigest()
    return report


def export(store: FeedbackStore, out_path: str | Path | None, *, since: float = 0.0, until: float = float("inf"),
           rating: str | None = None, model: str | None = None, source: str | None = None) -> ExportReport:
    """Write the pairs of feedback given in [since, until) to ``out_path`` (stdout when None); the report.
    A file appears whole or not at all (written beside it, then renamed)."""
    report = ExportReport(path=str(out_path) if out_path is not None else None)
    objects = pairs(store.rated(since, until), report, rating=rating, model=model, source=source)
    if out_path is None:
        write(objects, sys.stdout.buffer, report)
        sys.stdout.flush()
        return report
    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            write(objects, out, report)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return report
