"""The telemetry code of one request, timed in this process: every span and metric the service records
for a /summarize (request scope, GenAI span, backend call, batch and generation spans), exported to a
real collector in the background. End-to-end throughput (bench/telemetry_cost.py) hides this part in
its noise; here it is measured alone, against the same work with telemetry off.

It drives observability.telemetry's facade as the service does, so it follows that facade's calls.
"""

from __future__ import annotations

import asyncio
import os
import time

DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"
WARM_UP = 100


def _fixtures():
    from serving.protocol import GenerationResult, GenerationSettings

    settings = GenerationSettings(num_beams=4, max_new_tokens=64, min_new_tokens=0, length_penalty=1.0,
                                  no_repeat_ngram_size=3)
    result = GenerationResult(summary="s", input_tokens=40, output_tokens=20, truncated=False, backend="onnx-cpu",
                              model="m:1", batch_size=1, queue_wait_ms=1.0, generate_ms=10.0, padding_share=0.0)
    return settings, result


def _with_telemetry(n: int) -> tuple[float, float]:
    """(wall, CPU) seconds of ``n`` requests' telemetry, the export of their spans included."""
    from observability import telemetry
    from serving.observers import GenerationCall
    from serving.protocol import BackendName, EngineName, GenerationJob, GenerationOutcome
    from serving.routing import Routed

    settings, result = _fixtures()
    if not telemetry.start(service="bench", component="api", model="m:1", backend="onnx", role="primary",
                           device="cpu"):
        raise RuntimeError("telemetry did not start: set OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://127.0.0.1:4317")

    async def nothing(jobs):
        return [GenerationOutcome(result=result)]

    call = telemetry.traced_call(BackendName.ONNX, nothing)
    observer = telemetry.engine_observer()

    async def one_request():
        begun = telemetry.begin_request("/summarize")
        with telemetry.summarize("m:1", [DIALOGUE], settings) as observed:
            job = GenerationJob(text=DIALOGUE, settings=settings, enqueued_at=time.time())
            await call([job])  # carries the attempt's trace context in the job
            backend_job = GenerationJob.model_validate(job.model_dump())  # as the backend receives it
            observer.batch_started(BackendName.ONNX, [backend_job])
            generation = GenerationCall(EngineName.ONNX_CPU, "m:1", [backend_job], [40], settings, 0.0)
            token = observer.generation_started(generation)
            observer.generation_finished(token, generation, [20], None)
            observed.routed(Routed([result], BackendName.ONNX, fallback=False))
        begun[0].status = 200
        telemetry.end_request(begun)

    async def run():
        for _ in range(WARM_UP):
            await one_request()
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await one_request()
        telemetry.current().tracer_provider.force_flush()  # the export of these spans is part of the cost
        return time.perf_counter() - started, time.process_time() - cpu

    try:
        return asyncio.run(run())
    finally:
        telemetry.shutdown()


def _without_telemetry(n: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the same work with telemetry off: the jobs built and copied, the call made."""
    from serving.protocol import GenerationJob, GenerationOutcome

    settings, result = _fixtures()

    async def nothing(jobs):
        return [GenerationOutcome(result=result)]

    async def run():
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            job = GenerationJob(text=DIALOGUE, settings=settings, enqueued_at=time.time())
            GenerationJob.model_validate(job.model_dump())
            await nothing([job])
        return time.perf_counter() - started, time.process_time() - cpu

    return asyncio.run(run())


def telemetry_code_cost(otlp_grpc_endpoint: str, n: int = 2000) -> dict[str, float]:
    """Microseconds of telemetry code per request, wall and CPU, exporting to ``otlp_grpc_endpoint``."""
    os.environ.update({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    on, cpu_on = _with_telemetry(n)
    off, cpu_off = _without_telemetry(n)
    return {"requests": n, "us_per_request_on": round(on / n * 1e6, 1), "us_per_request_off": round(off / n * 1e6, 1),
            "us_telemetry_per_request": round((on - off) / n * 1e6, 1),
            "cpu_us_telemetry_per_request": round((cpu_on - cpu_off) / n * 1e6, 1)}
