"""What recording answers for feedback costs a request: ``RecordAnswers.after`` (feedback/recording.py) timed in
this process against a real store, as the service awaits it once per request before the answer leaves.

    python -m bench.feedback_cost [--path DIR_OR_FILE] [--url postgresql://...] [--requests 2000]

Per request: the latency it adds (wall, p50/p99) and the time it holds the event loop (the loop thread's CPU
time: what other requests wait for; the database work itself runs in a thread), for one dialogue and for a
batch of 32, text retention off and on; and a POST /feedback's commit (``synchronous=FULL`` on SQLite).
Prints a table and writes bench/results/feedback_cost-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import busy_warning, fmt, git_revision, machine_info, now_iso, write_results

DIALOGUE = ("Customer: My card was charged twice for order 1182.\nAgent: I see both charges; the second one is "
            "refunded today.\nCustomer: Thanks!") * 4


def _items(n: int):
    from serving.flow import Item
    from serving.protocol import Summary

    items = [Item(DIALOGUE) for _ in range(n)]
    for item in items:
        item.summary = Summary(summary="The agent refunds the second charge today.", model="m:1", backend="onnx-cpu",
                               input_tokens=120, output_tokens=12, truncated=False)
    return items


def _call():
    from serving.flow import Call
    from serving.protocol import GenerationSettings

    return Call("m:1", GenerationSettings(num_beams=4, max_new_tokens=128, min_new_tokens=0, length_penalty=1.0,
                                          no_repeat_ngram_size=3), "/summarize")


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": statistics.median(ordered), "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "mean": statistics.fmean(ordered)}


async def _record(store, items_per_request: int, retain_text: bool, requests: int) -> dict:
    from feedback.recording import RecordAnswers

    step, call = RecordAnswers(store, retain_text=retain_text), _call()
    walls, loop = [], []
    for i in range(requests + 20):
        items = _items(items_per_request)
        started, cpu = time.perf_counter(), time.thread_time()
        await step.after(items, call)
        if i >= 20:  # warm-up: the connection, the tables, the thread pool
            walls.append((time.perf_counter() - started) * 1000)
            loop.append((time.thread_time() - cpu) * 1000)
    return {"wall_ms": _percentiles(walls), "loop_ms": _percentiles(loop)}


async def _submit(store, requests: int) -> dict:
    from feedback.protocol import FeedbackRequest
    from feedback.recording import RecordAnswers, answer_feedback

    step, call = RecordAnswers(store), _call()
    items = _items(requests)
    await step.after(items, call)
    walls = []
    for item in items:
        started = time.perf_counter()
        await answer_feedback(store, FeedbackRequest(request_id=item.request_id, rating="bad",
                                                     corrected_summary="The second charge is refunded today."))
        walls.append((time.perf_counter() - started) * 1000)
    return {"wall_ms": _percentiles(walls)}


def measure(store, requests: int) -> list[dict]:
    rows = []
    for items, retain in ((1, False), (1, True), (32, False), (32, True)):
        n = requests if items == 1 else max(20, requests // 16)
        result = asyncio.run(_record(store, items, retain, n))
        rows.append({"what": f"record {items} answer{'s' if items > 1 else ''}, text {'kept' if retain else 'hashed'}",
                     "requests": n, **result})
    n = max(50, requests // 10)
    rows.append({"what": "POST /feedback commit", "requests": n, **asyncio.run(_submit(store, n))})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feedback_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", help="SQLite file, or a directory for a new one (default: a temporary directory)")
    parser.add_argument("--url", help="also measure PostgreSQL at this postgresql:// URL (its tables are used as is)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--out-dir", help="where the JSON goes (default bench/results)")
    args = parser.parse_args(argv)

    from feedback.store import PostgresStore, SQLiteStore

    warning = busy_warning()
    with tempfile.TemporaryDirectory(prefix="feedback-cost-") as scratch:
        where = Path(args.path or scratch)
        path = where / "feedback.sqlite3" if where.is_dir() else where
        stores = [("sqlite", SQLiteStore(path))] + ([("postgresql", PostgresStore(args.url))] if args.url else [])
        report = {"kind": "feedback_cost", "at": now_iso(), "revision": git_revision(), "machine": machine_info(),
                  "busy_warning": warning, "sqlite_path": str(path), "results": {}}
        for name, store in stores:
            try:
                report["results"][name] = measure(store, args.requests)
            finally:
                store.close()
    lines = [f"{'store':<11} {'what':<34} {'n':>5} {'wall p50':>9} {'wall p99':>9} {'loop p50':>9} {'loop p99':>9}"]
    for name, rows in report["results"].items():
        for row in rows:
            loop = row.get("loop_ms", {})
            lines.append(f"{name:<11} {row['what']:<34} {row['requests']:>5} {fmt(row['wall_ms']['p50'], 3):>9} "
                         f"{fmt(row['wall_ms']['p99'], 3):>9} {fmt(loop.get('p50'), 3):>9} {fmt(loop.get('p99'), 3):>9}")
    lines.append("milliseconds per request; wall: latency added to the request; loop: event-loop thread's CPU time")
    if warning:
        lines.append(f"warning: {warning}")
    path = write_results("feedback_cost", report, args.out_dir)
    print("\n".join(lines))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
