"""Soak: the shipped default model under steady load for a long time, its telemetry going to a real collector
that is stopped and restarted mid-way; does anything leak, fail or slow down?

    python -m bench.soak                   50 clients for 10 minutes (make soak)
    python -m bench.soak --minutes 1 --clients 2     a short run ($SOAK_MINUTES sets the default length)

``bentoml serve`` with the shipped settings on the default model (``--model`` for another), exporting traces
and metrics over OTLP/gRPC to rotel (observability/collector.py) on loopback. The collector is stopped at 40 %
of the run and started again at 60 %.

Clients are closed-loop, as people at a support desk are: each sends a DialogSum test dialogue (the load
test's inputs, seeded order, short and long as they come), waits for its summary, then thinks for a random
time (exponential, mean ``--think-s``, default 5 s) before the next. 50 such clients ask for about 9
summaries/s, a third of what one replica answers at the p99 alert threshold on an idle 2-CPU machine (28.7/s,
README "Capacity of one replica"): a steady real load with room for the noise of a shared machine, not a
flood past capacity (the load test covers that). Each client starts after a random part of one think time.

Every ``--sample-s`` (10 s) each process of the serve tree is sampled (psutil: RSS, USS, open files). At the
end: requests, errors (must be 0), p50/p99 against the p99 alert threshold (observability/alerts.yml), each
process's memory after warm-up (the first 20 %) against the end (growth < 5 %), its open files, and the
collector's outage window against the rest. A table on stdout with PASS/FAIL per criterion, JSON in
bench/results/soak.json (and soak-<time>.json). Exit status 0 when every criterion passes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from bench.common import (RESULTS_DIR, busy_warning, git_revision, load_dialogues, log, machine_info,  # noqa: E402
                          now_iso, publish)
from bench.soak_report import analyse, render  # noqa: E402

OUTAGE = (0.4, 0.6)  # the collector is down between these fractions of the run
DIALOGUES = 500  # distinct inputs cycled through (DialogSum test has 500)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 10),
                        help="length of the load ($SOAK_MINUTES, default 10)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--think-s", type=float, default=5.0, help="mean think time between a client's requests")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples of the serve tree")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="a request not answered by then is an error")
    parser.add_argument("--model", help="stored model (default: $SUMMARIZER_MODEL or dialogue-bart-small:latest)")
    parser.add_argument("--data-dir", help="corpora (default: $SUMMARIZER_DATA_DIR or ../shared/data)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="setting for the service, e.g. SUMMARIZER_MAX_BATCH_SIZE=16 (repeatable)")
    parser.add_argument("--no-outage", action="store_true", help="keep the collector up all along")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", help=f"results directory (default: {RESULTS_DIR})")
    parser.add_argument("--keep-logs", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench.capacity import p99_alert_threshold_s
    from bench.loadtest import start_service
    from observability.collector import Collector

    duration = args.minutes * 60.0
    threshold = p99_alert_threshold_s()
    dialogues = load_dialogues(DIALOGUES, data_dir=args.data_dir)
    logs = Path(tempfile.mkdtemp(prefix="soak-"))
    warning = busy_warning()
    if warning:
        log(f"warning: {warning}")
    spans = SpanCounter()
    collector = Collector(logs / "collector.log", on_received=spans.received).start()
    server = None
    try:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
               "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=soak",
               **dict(item.split("=", 1) for item in args.env)}
        server, model, _ = start_service(args.model, env, logs)
        log(f"soak: {args.clients} clients, think {args.think_s:g} s, {args.minutes:g} min; sampling every "
            f"{args.sample_s:g} s; collector down at {OUTAGE[0]:.0%}-{OUTAGE[1]:.0%}")
        run = asyncio.run(soak(server, collector, dialogues, args, duration))
        cold_start = server.ready_after_s
    finally:
        if server:
            server.stop()
        collector.stop()
    outage = run["outage"]
    report = analyse(run["records"], run["samples"], duration, threshold, outage,
                     spans.after(run["restarted_at"]) if run["restarted_at"] else None)
    report.update({
        "created": now_iso(), "git": git_revision(), "command": "python -m bench.soak " + " ".join(sys.argv[1:]),
        "machine": machine_info(), "busy_warning": warning, "model": model, "service_env": env,
        "cold_start_s": cold_start, "duration_s": duration,
        "throughput_rps": len(run["records"]) / duration,
        "config": {"clients": args.clients, "think_s": args.think_s, "sample_s": args.sample_s,
                   "timeout_s": args.timeout_s, "minutes": args.minutes, "outage_fractions": None if args.no_outage
                   else OUTAGE, "dialogues": f"DialogSum test, {len(set(dialogues))} distinct", "seed": args.seed},
        "samples": run["samples"], "records": run["records"]})
    path = publish("soak", report, args.out, render(report), logs, args.keep_logs)
    (path.parent / "soak.json").write_text(path.read_text())
    return 0 if report["passed"] else 1


class SpanCounter:
    """Spans the collector forwarded, by when they arrived (to see telemetry resume after the restart)."""

    def __init__(self) -> None:
        self._arrivals: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def received(self, spans, points) -> None:
        with self._lock:
            self._arrivals.append((time.monotonic(), len(spans)))

    def after(self, moment: float) -> int:
        with self._lock:
            return sum(n for at, n in self._arrivals if at > moment)


async def soak(server, collector, dialogues: list[str], args, duration: float) -> dict:
    """The load, the samples and the collector's outage, together for ``duration`` seconds."""
    import httpx

    started = time.monotonic()
    end = started + duration
    records: list[dict] = []
    samples: list[dict] = []
    moments: dict[str, float] = {}
    rng = random.Random(args.seed)
    order = iter(range(10**9))

    async def client(index: int) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=args.timeout_s) as http:
            await asyncio.sleep(rng.uniform(0, args.think_s))
            while time.monotonic() < end:
                dialogue = dialogues[next(order) % len(dialogues)]
                sent = time.monotonic()
                try:
                    response = await http.post("/summarize", json={"dialogue": dialogue})
                    ok, error = response.status_code == 200, None if response.status_code == 200 else \
                        f"HTTP {response.status_code} {_code(response)}"
                except httpx.HTTPError as exc:
                    ok, error = False, type(exc).__name__
                records.append({"t": sent - started, "latency_s": time.monotonic() - sent, "ok": ok,
                                "error": error, "client": index})
                await asyncio.sleep(min(rng.expovariate(1 / args.think_s), max(0.0, end - time.monotonic())))

    async def sampler() -> None:
        while time.monotonic() < end:
            samples.append(await asyncio.to_thread(sample, server, started))
            await asyncio.sleep(args.sample_s)
        samples.append(await asyncio.to_thread(sample, server, started))

    async def outage() -> None:
        if args.no_outage:
            return
        await asyncio.sleep(OUTAGE[0] * duration)
        moments["stopped"] = time.monotonic()
        await asyncio.to_thread(collector.process.stop, 10)
        log(f"collector stopped at {moments['stopped'] - started:.0f} s")
        await asyncio.sleep(max(0.0, started + OUTAGE[1] * duration - time.monotonic()))
        await asyncio.to_thread(collector.process.start)
        moments["restarted"] = time.monotonic()
        log(f"collector restarted at {moments['restarted'] - started:.0f} s")

    async def progress() -> None:
        while time.monotonic() < end:
            await asyncio.sleep(60)
            done = [r for r in records]
            log(f"{time.monotonic() - started:.0f} s: {len(done)} requests, {sum(not r['ok'] for r in done)} errors")

    await asyncio.gather(sampler(), outage(), progress(), *(client(i) for i in range(args.clients)))
    window = (moments["stopped"] - started, moments["restarted"] - started) if "restarted" in moments else None
    return {"records": records, "samples": samples, "outage": window, "restarted_at": moments.get("restarted")}


def _code(response) -> str:
    try:
        return str(response.json().get("code"))
    except ValueError:
        return ""


def sample(server, started: float) -> dict:
    """One sample: seconds since the load started, the machine's 1-minute load average (on a shared machine,
    what says whether a slow minute was ours), and each process of the serve tree."""
    return {"t": time.monotonic() - started, "load_average": os.getloadavg()[0], "processes": sample_tree(server)}


def sample_tree(server) -> dict[str, dict]:
    """Each live process of the serve tree: its pid, RSS and USS in MiB, and open files, by a stable label
    (the BentoML service a worker runs; a service's second worker, e.g. the public service's, gets " #2")."""
    import psutil

    from bench.servers import _short_cmd
    from harness.workers import service_workers

    worker_ids = {worker.pid: worker.worker_id for worker in service_workers(server.pid)}
    out: dict[str, dict] = {}
    tree = {p.pid: p for p in [psutil.Process(server.pid), *server.descendants()]}  # descendants include the root
    for proc in tree.values():
        try:
            with proc.oneshot():
                memory = proc.memory_full_info()
                cpu = proc.cpu_times()
                row = {"pid": proc.pid, "rss_mib": round(memory.rss / 2**20, 2),
                       "uss_mib": round(memory.uss / 2**20, 2), "fds": proc.num_fds(),
                       "sockets": len(proc.net_connections(kind="all")),
                       "cpu_s": round(cpu.user + cpu.system, 2)}
                label = _short_cmd(" ".join(proc.cmdline()))
                if worker_ids.get(proc.pid, 1) > 1:
                    label += f" #{worker_ids[proc.pid]}"
        except psutil.Error:
            continue
        out[label if label not in out else f"{label} (pid {proc.pid})"] = row
    return out


if __name__ == "__main__":
    sys.exit(main())
