"""Fault drill: SIGKILL one worker process of a real ``bentoml serve`` under load; how many requests fail,
and how soon new ones are served again.

    python -m bench.drill                            every worker kind: 16 clients, 45 s, kill at 15 s
    python -m bench.drill --kinds onnx,api --clients 8 --seconds 20
    make drill

For each kind the service is started with its configuration (shipped settings otherwise, the model in
BentoML's store, default ``dialogue-bart-small:latest``): ``--clients`` clients (the Python client,
``AsyncSummarizerClient``, as a caller would use it: it sends a dropped request once more by itself) post
DialogSum test dialogues one after another for ``--seconds``; at a third of that the worker is SIGKILLed
and BentoML respawns it.

Reported per kind, times from the kill: requests, failures (and why), the requests in flight at the kill;
when a new connection to the service got an answer again (GET /readyz, polled every 50 ms); the first
summary answered after it (a retried one included); the first summary of a request sent after it (it
includes that request's own time: compare the median before the kill); the slowest request sent after it
(whether one waited out the respawn); when the killed worker's replacement started and (a backend) answered.
Results: a table on stdout, JSON in bench/results/drill.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from bench.common import RESULTS_DIR, busy_warning, fmt, git_revision, log, machine_info, now_iso  # noqa: E402
from harness import Worker, replacement, service_workers, wait_answering  # noqa: E402

API, ONNX, TORCH = "dialogue_summarizer", "summarizer_onnx", "summarizer_torch"
TORCH_PRIMARY = {"SUMMARIZER_PRIMARY": "torch", "SUMMARIZER_FALLBACK": "onnx"}


@dataclass(frozen=True)
class Kind:
    """One drill: the service's configuration and the BentoML service whose worker is killed."""

    name: str
    label: str
    victim: str
    env: dict[str, str] = field(default_factory=dict)


KINDS = {kind.name: kind for kind in (
    Kind("onnx", "CPU default (ONNX, no fallback): ONNX worker", ONNX),
    Kind("torch", "PyTorch primary + ONNX fallback: PyTorch worker", TORCH, TORCH_PRIMARY),
    Kind("onnx-fallback", "PyTorch primary + ONNX fallback: ONNX worker", ONNX, TORCH_PRIMARY),
    Kind("api", "CPU default: one of the API workers", API),
)}


@dataclass
class Request:
    started: float
    ended: float
    error: str | None  # None: a summary came back
    fallback: bool = False


@dataclass
class Kill:
    at: float
    worker: Worker
    replacement_started: float | None = None
    replacement_answers: float | None = None
    served_again: float | None = None  # a new connection to the public port got an answer


def drill(url: str, root_pid: int, victim: str, dialogues: list[str], *, clients: int, seconds: float,
          kill_at_s: float | None = None, timeout_s: float = 120.0) -> dict:
    """Load ``url`` with ``clients`` clients for ``seconds``, SIGKILL a ``victim`` worker (a BentoML service
    name) under ``root_pid`` at ``kill_at_s`` (a third of the way by default); the figures."""
    return asyncio.run(_drill(url, root_pid, victim, dialogues, clients, seconds,
                              seconds / 3 if kill_at_s is None else kill_at_s, timeout_s))


async def _drill(url: str, root_pid: int, victim: str, dialogues: list[str], clients: int, seconds: float,
                 kill_at_s: float, timeout_s: float) -> dict:
    from client import AsyncSummarizerClient, ClientError

    workers = service_workers(root_pid, victim)
    if not workers:
        raise RuntimeError(f"no {victim} worker under pid {root_pid}")
    requests: list[Request] = []
    texts = itertools.cycle(dialogues)
    start = time.monotonic()
    stop = start + seconds

    async def one_client(client: AsyncSummarizerClient) -> None:
        while time.monotonic() < stop:
            began = time.monotonic()
            try:
                summary = await client.summarize(next(texts))
                requests.append(Request(began, time.monotonic(), None, summary.fallback))
            except ClientError as exc:
                requests.append(Request(began, time.monotonic(), _reason(exc)))

    async def killer() -> Kill:
        await asyncio.sleep(kill_at_s)
        kill = Kill(time.monotonic(), workers[0])
        os.kill(kill.worker.pid, signal.SIGKILL)
        probe = asyncio.create_task(served_again(kill))
        new = await asyncio.to_thread(replacement, root_pid, kill.worker)
        kill.replacement_started = time.monotonic()
        if kill.worker.socket_path:  # a backend: its replacement answers once it has loaded the model
            await asyncio.to_thread(wait_answering, kill.worker.socket_path)
            kill.replacement_answers = time.monotonic()
        await probe
        log(f"killed {victim} worker {kill.worker.worker_id} (pid {kill.worker.pid}); replacement pid {new.pid}")
        return kill

    async def served_again(kill: Kill) -> None:
        """From the kill on, a fresh connection every 50 ms asks /readyz until one gets 200."""
        while True:
            try:
                async with httpx.AsyncClient(timeout=timeout_s) as fresh:
                    if (await fresh.get(url + "/readyz")).status_code == 200:
                        kill.served_again = time.monotonic()
                        return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)

    async with AsyncSummarizerClient(url, timeout_s=timeout_s, max_connections=clients) as client:
        kill, *_ = await asyncio.gather(killer(), *(one_client(client) for _ in range(clients)))
    return figures(requests, kill, start)


def figures(requests: list[Request], kill: Kill, start: float) -> dict:
    """What the drill reports, times in seconds from the kill."""
    after = [r for r in requests if r.started >= kill.at]
    before = [r for r in requests if r.ended < kill.at and r.error is None]
    failed = [r for r in requests if r.error is not None]

    def since_kill(moment: float | None) -> float | None:
        return None if moment is None else round(moment - kill.at, 3)

    latencies = sorted(r.ended - r.started for r in before)
    return {
        "requests": len(requests), "failures": len(failed), "errors": dict(Counter(r.error for r in failed)),
        "in_flight_at_kill": sum(r.started < kill.at <= r.ended for r in requests),
        "served_again_s": since_kill(kill.served_again),
        "kill_at_s": round(kill.at - start, 3), "killed_pid": kill.worker.pid,
        # Any summary after the kill (a retried one included), then one of a request sent after it.
        "first_answer_after_kill_s": since_kill(min((r.ended for r in requests if r.ended >= kill.at
                                                     and r.error is None), default=None)),
        "first_success_after_kill_s": since_kill(min((r.ended for r in after if r.error is None), default=None)),
        "slowest_after_kill_s": round(max((r.ended - r.started for r in after), default=0.0), 3),
        "median_before_kill_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
        "fallback_answers": sum(r.fallback for r in requests),
        "replacement_started_s": since_kill(kill.replacement_started),
        "replacement_answers_s": since_kill(kill.replacement_answers),
    }


def _reason(exc: Exception) -> str:
    from client import ServiceError, ServiceUnreachable

    if isinstance(exc, ServiceError):
        return f"{exc.status} {exc.code or 'no error code'}"
    if isinstance(exc, ServiceUnreachable):
        return f"no answer: {exc.cause}"
    return type(exc).__name__


# --------------------------------------------------------------------------- the command


def render(results: dict) -> str:
    header = ("kind", "requests", "failed", "in flight at kill", "served again", "first answer", "first new success",
              "slowest new request",
              "replacement started", "replacement answers")
    rows = [header]
    for name, r in results["kinds"].items():
        rows.append((KINDS[name].label if name in KINDS else name, str(r["requests"]), str(r["failures"]),
                     str(r["in_flight_at_kill"]), fmt(r["served_again_s"], 2, " s"),
                     fmt(r["first_answer_after_kill_s"], 1, " s"),
                     fmt(r["first_success_after_kill_s"], 1, " s"),
                     fmt(r["slowest_after_kill_s"], 1, " s"), fmt(r["replacement_started_s"], 1, " s"),
                     fmt(r["replacement_answers_s"], 1, " s")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    config = results["config"]
    title = (f"Fault drill: {config['clients']} clients, {config['seconds']:g} s, one worker SIGKILLed at "
             f"{config['seconds'] / 3:g} s ({results['model']}); times from the kill")
    errors = [f"{name}: {r['errors']}" for name, r in results["kinds"].items() if r["errors"]]
    return "\n".join([title, "", *lines, *(["", "failures: " + "; ".join(errors)] if errors else [])])


def main(argv: list[str] | None = None) -> int:
    from bench.common import short_and_long
    from bench.servers import START_TIMEOUT_S, summarizer_server
    from serving.config import DEFAULT_MODEL_NAME

    parser = argparse.ArgumentParser(prog="python -m bench.drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of: {', '.join(KINDS)}")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--model", help="stored model (default: $SUMMARIZER_MODEL or dialogue-bart-small:latest)")
    parser.add_argument("--data-dir", help="corpora (default: $SUMMARIZER_DATA_DIR or ../shared/data)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "drill.json")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    kinds = [name.strip() for name in args.kinds.split(",") if name.strip()]
    unknown = [name for name in kinds if name not in KINDS]
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    model = args.model or os.environ.get("SUMMARIZER_MODEL") or f"{DEFAULT_MODEL_NAME}:latest"
    short, _ = short_and_long(args.data_dir)  # the short half: many requests, so the kill catches some in flight
    logs = Path(tempfile.mkdtemp(prefix="drill-"))
    results = {"started": now_iso(), "revision": git_revision(), "machine": machine_info(),
               "busy_warning": busy_warning(), "model": model,
               "config": {"clients": args.clients, "seconds": args.seconds, "dialogues": "dialogsum_test short half"},
               "kinds": {}}
    for name in kinds:
        kind = KINDS[name]
        server = summarizer_server(f"drill-{name}", model, logs, **kind.env)
        log(f"{name}: starting the service ...")
        server.start(timeout_s=START_TIMEOUT_S)
        try:
            log(f"{name}: {args.clients} clients for {args.seconds:g} s, killing a {kind.victim} worker")
            results["kinds"][name] = {"label": kind.label, "env": kind.env, "victim": kind.victim,
                                      **drill(server.url, server.pid, kind.victim, short, clients=args.clients,
                                              seconds=args.seconds)}
        finally:
            server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(render(results))
    print(f"\nresults: {args.out}")
    if args.keep_logs:
        print(f"logs: {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return 0 if all(r["failures"] == 0 for r in results["kinds"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
