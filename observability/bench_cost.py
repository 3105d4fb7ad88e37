"""What telemetry costs: throughput with OTLP export on vs off, in one run, against a real collector.

    python -m observability.bench_cost --tiny                  # tiny BART in a throwaway BentoML home
    python -m observability.bench_cost --model dialogue-bart-small:latest --requests 64 --concurrency 8

Starts rotel, then serves the same model alternately without and with telemetry (``--rounds`` of each,
interleaved so that drift on a shared machine hits both), sends the same requests at the same
concurrency, and prints throughput and latency per mode. Then it times the telemetry code of one request
in-process (every span and metric the service records for it), which is the part end-to-end noise hides.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DIALOGUES = [
    "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)",
    "Tom: Lunch at noon?\nAnna: OK, see you at the usual place.\nTom: Great, I'll book a table.",
    "Lena: Did the parcel arrive?\nMax: Yes, this morning, thanks a lot!\nLena: Great, enjoy it.",
    "Sam: Are we still on for the meeting at 3?\nKim: Yes, room 4B.\nSam: Perfect, I'll bring the slides.",
]


async def _load(url: str, n: int, concurrency: int) -> tuple[float, list[float], int]:
    import httpx

    latencies: list[float] = []
    errors = 0
    queue = list(range(n))

    async def worker(client):
        nonlocal errors
        while queue:
            i = queue.pop()
            started = time.perf_counter()
            resp = await client.post("/summarize", json={"dialogue": DIALOGUES[i % len(DIALOGUES)]})
            latencies.append(time.perf_counter() - started)
            errors += resp.status_code != 200

    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        await client.post("/summarize", json={"dialogue": DIALOGUES[0]})  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, errors


def end_to_end(model: str, env: dict[str, str], collector, args, workdir: Path) -> dict[str, list[dict]]:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.server import ServedSummarizer

    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    results: dict[str, list[dict]] = {"off": [], "on": []}
    for round_ in range(args.rounds):
        for mode in ("off", "on"):
            serve_env = {**env, "SUMMARIZER_MODEL": model, **(otel if mode == "on" else {})}
            if mode == "off":
                serve_env = {k: v for k, v in serve_env.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
            with ServedSummarizer(serve_env, workdir / f"serve-{mode}-{round_}.log") as server:
                seconds, latencies, errors = asyncio.run(_load(server.url, args.requests, args.concurrency))
            row = {"round": round_, "requests": args.requests, "errors": errors, "seconds": round(seconds, 3),
                   "throughput_rps": round(args.requests / seconds, 3),
                   "p50_s": round(statistics.median(latencies), 3),
                   "p95_s": round(sorted(latencies)[int(0.95 * (len(latencies) - 1))], 3)}
            results[mode].append(row)
            print(f"  round {round_} telemetry {mode:3}: {row['throughput_rps']:.2f} req/s, "
                  f"p50 {row['p50_s']:.3f}s, p95 {row['p95_s']:.3f}s, {errors} errors", flush=True)
    return results


def in_process(collector, n: int = 2000) -> dict[str, float]:
    """Microseconds of telemetry code per request, exporting to the collector in the background."""
    os.environ.update({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    sys.path.insert(0, str(REPO_ROOT))
    from observability import telemetry
    from serving.protocol import GenerationResult, GenerationSettings
    from serving.routing import Routed

    telemetry._settings = None
    telemetry.start(service="bench", component="api", model="m:1", backend="onnx", role="primary", device="cpu")
    settings = GenerationSettings(num_beams=4, max_new_tokens=64, min_new_tokens=0, length_penalty=1.0,
                                  no_repeat_ngram_size=3)
    result = GenerationResult(summary="s", input_tokens=40, output_tokens=20, truncated=False, backend="onnx-cpu",
                              model="m:1", batch_size=1, queue_wait_ms=1.0, generate_ms=10.0, padding_share=0.0)

    async def nothing(jobs):
        return [result]

    call = telemetry.traced_call("onnx", nothing)

    async def one_request():
        begun = telemetry.begin_request("/summarize")
        with telemetry.summarize("m:1", [DIALOGUES[0]], settings) as observed:
            job = telemetry.TracedGenerationJob(text=DIALOGUES[0], settings=settings, enqueued_at=time.time())
            with telemetry.span("POST /generate"):  # stands for the backend's server span
                backend_job = telemetry.TracedGenerationJob.model_validate(job.model_dump())
            telemetry.batch_started("onnx", [backend_job])
            with telemetry.generation("onnx-cpu", "m:1", [backend_job], [40], settings, 0.0) as gen:
                gen.done([20])
            await call([job])
            observed.routed(Routed([result], "onnx", fallback=False))
        begun[0].status = 200
        telemetry.end_request(begun)

    async def run():
        for _ in range(100):
            await one_request()
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await one_request()
        telemetry._runtime.tracer_provider.force_flush()  # the export of these spans is part of the cost
        return time.perf_counter() - started, time.process_time() - cpu

    with_telemetry, cpu_on = asyncio.run(run())
    telemetry.shutdown()
    telemetry._runtime = None

    async def baseline():  # the same work with telemetry off (facade no-ops), for the difference
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            job = telemetry.TracedGenerationJob(text=DIALOGUES[0], settings=settings, enqueued_at=time.time())
            telemetry.TracedGenerationJob.model_validate(job.model_dump())
            await nothing([job])
        return time.perf_counter() - started, time.process_time() - cpu

    without, cpu_off = asyncio.run(baseline())
    return {"requests": n, "us_per_request_on": round(with_telemetry / n * 1e6, 1),
            "us_per_request_off": round(without / n * 1e6, 1),
            "us_telemetry_per_request": round((with_telemetry - without) / n * 1e6, 1),
            "cpu_us_telemetry_per_request": round((cpu_on - cpu_off) / n * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("SUMMARIZER_MODEL", "dialogue-bart-small:latest"))
    parser.add_argument("--tiny", action="store_true", help="import a tiny random BART into a throwaway BentoML home")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    from observability.collector import Collector

    workdir = Path(tempfile.mkdtemp(prefix="telemetry-cost-"))
    env = {"BENTOML_DO_NOT_TRACK": "true"}
    model = args.model
    if args.tiny:
        home = workdir / "bentoml_home"
        os.environ["BENTOML_HOME"] = env["BENTOML_HOME"] = str(home)
        sys.path.insert(0, str(REPO_ROOT))
        from model_store.store import import_model
        from model_store.tiny import build_tiny_bart

        model = import_model(str(build_tiny_bart(workdir / "tiny-bart")), "tiny-bart").tag
    print(f"model {model}; {args.requests} requests at concurrency {args.concurrency}, {args.rounds} rounds "
          f"per mode; logs in {workdir}", flush=True)
    with Collector(workdir / "collector.log", verbosity="basic") as collector:
        e2e = end_to_end(model, env, collector, args, workdir)
        micro = in_process(collector)
    summary = {mode: round(statistics.mean(r["throughput_rps"] for r in rows), 3) for mode, rows in e2e.items()}
    change = (summary["on"] / summary["off"] - 1.0) * 100.0
    print(f"throughput: telemetry off {summary['off']:.2f} req/s, on {summary['on']:.2f} req/s ({change:+.1f} %)")
    print(f"telemetry code per request (in-process, all spans + metrics + export): "
          f"{micro['us_telemetry_per_request']:.0f} µs wall, {micro['cpu_us_telemetry_per_request']:.0f} µs CPU")
    if args.json:
        args.json.write_text(json.dumps({"model": model, "end_to_end": e2e, "mean_throughput_rps": summary,
                                         "change_percent": round(change, 2), "in_process": micro}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
