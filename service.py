"""BentoML services of the dialogue summarizer: thin wiring; the logic lives in serving/.

    bentoml serve service:DialogueSummarizer

DialogueSummarizer (public, HTTP)  --bentoml.depends-->  TorchBackend  (PyTorch; fp16 on CUDA)
                                   --bentoml.depends-->  OnnxBackend   (ONNX Runtime on CPU)
Both backends expose a batchable ``generate`` so BentoML's adaptive batching groups concurrent requests.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Optional

import bentoml
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import cache as response_cache
from feedback import open_store
from feedback.protocol import FeedbackReceipt, FeedbackRequest, Rating
from feedback.protocol import body_limit as feedback_body_limit
from feedback.recording import FEEDBACK_ERRORS, RecordAnswers, answer_feedback
from observability import drift, telemetry
from observability.middleware import RequestTelemetry
from serving import log_privacy, request_timeout
from serving.admission import AdmissionControl
from serving.auth import ApiKeyAuth
from serving.backends import BackendWorker
from serving.body_limits import BodyLimits
from serving.config import ServingConfig
from serving.devices import cuda_available
from serving.engines import HF_SUBDIR, context_length, default_settings
from serving.errors import ErrorBodies, ErrorCode, error_response
from serving.flow import Call, Flow, Refusal
from serving.gc_freeze import freeze_startup_objects
from serving.health import BackendHealth
from serving.inspection import InputInspection
from serving.long_dialogue import LongDialogues
from serving.openapi import published_spec
from serving.protocol import (BackendName, BackendStatus, GenerationJob, GenerationOptions, GenerationOutcome,
                              ModelInfo, Summary, SummaryBatch, request_models)
from serving.routing import Backend, BackendUnavailable, Router
from serving.startup import explained_exit, stored_model
from serving.tokenization import ModelTokenizer
from serving.validation_errors import RequestValidation
from ui import PUBLIC_PAGE_PATHS, PUBLIC_PAGE_PREFIX, page_app

# Before BentoML builds the apps: its timeout middleware kept every request's objects alive for the timeout.
request_timeout.install()
log_privacy.install()  # BentoML logs a refused body's values with its traceback; only the error types remain
# A bad setting, a model not in the store or a damaged model file stops the service here, in BentoML's main
# process before any worker starts, with one line naming it and the fix (not in BentoML's model resolution,
# which would try a cloud download and report "no cloud context"; not in a worker, which BentoML respawns).
with explained_exit():
    CONFIG = ServingConfig.load()  # once per process, from SUMMARIZER_*; passed to what needs it
    STORED = stored_model(CONFIG)  # the main process checks the routed backends' files against their sha256
SummarizeRequest, SummarizeBatchRequest = request_models(CONFIG.limits)
SUMMARIZE_ROUTES = {"/summarize": SummarizeRequest, "/summarize_batch": SummarizeBatchRequest}
REQUEST_MODELS = {**SUMMARIZE_ROUTES, "/feedback": FeedbackRequest}
telemetry.configure_bentoml()  # OTLP from the OTEL_* variables; off (and free) without an endpoint
BACKEND_CONFIG = dict(
    traffic={"timeout": CONFIG.request_timeout_s, "max_concurrency": 10_000},
    # BentoML's dependency client replaces its HTTP session every 100 calls or 5 minutes by default and
    # closes the old one under requests still in flight (they fail; bentoml/BentoML#5540): never recycle.
    runner_connection={"max_requests": 2**31 - 1, "max_age": 1e9},
)
# BentoML refuses max_batch_size=1 on a batchable API: SUMMARIZER_MAX_BATCH_SIZE=1 means "no batching".
BATCHING = (dict(batchable=True, max_batch_size=CONFIG.max_batch_size, max_latency_ms=CONFIG.max_latency_ms)
            if CONFIG.max_batch_size > 1 else {})


class _BackendService:
    """What both backend services share; a subclass names its backend."""

    backend: BackendName
    model_ref = bentoml.models.BentoModel(CONFIG.model_tag)

    def __init__(self) -> None:
        stored = STORED
        self.worker = BackendWorker(self.backend, CONFIG, stored.path, str(stored.tag),
                                    observer=telemetry.engine_observer())
        telemetry.start(service=f"summarizer_{self.backend}", component="backend", model=str(stored.tag),
                        backend=self.backend, role=self.worker.role, device=self.worker.device)
        freeze_startup_objects()

    @bentoml.api(**BATCHING)
    def generate(self, jobs: list[GenerationJob]) -> list[GenerationOutcome]:
        return self.worker.generate(jobs)

    @bentoml.api
    def status(self) -> BackendStatus:
        return self.worker.status()


@bentoml.service(name="summarizer_torch", resources={"gpu": 1}, **BACKEND_CONFIG)
class TorchBackend(_BackendService):
    backend = BackendName.TORCH


@bentoml.service(name="summarizer_onnx", resources={"cpu": "2"}, **BACKEND_CONFIG)
class OnnxBackend(_BackendService):
    backend = BackendName.ONNX


# BentoML's runner probe is off: it made /readyz also GET every dependency's /readyz, so one backend down
# (even one no request is routed to) made the pod unready, and each probe waited on two busy backends.
# Readiness is __is_ready__ alone: the backends' last known state (serving/health.py).
# Several API workers accept on one socket: while BentoML respawns a killed one, the others serve.
@bentoml.service(name="dialogue_summarizer", traffic={"timeout": CONFIG.request_timeout_s},
                 runner_probe={"enabled": False}, workers=CONFIG.api_workers)
class DialogueSummarizer:
    model_ref = bentoml.models.BentoModel(CONFIG.model_tag)
    torch_backend = bentoml.depends(TorchBackend)
    onnx_backend = bentoml.depends(OnnxBackend)

    def __init__(self) -> None:
        stored = STORED
        self.model_tag = str(stored.tag)
        self.defaults = default_settings(stored.path_of(HF_SUBDIR))
        self.context_tokens = context_length(stored.path_of(HF_SUBDIR))
        primary, fallback = CONFIG.routing(cuda_available())
        telemetry.start(service="dialogue_summarizer", component="api", model=self.model_tag, backend=primary,
                        fallback=fallback)
        # Looked up per call: BentoML sets up a dependency client's endpoints after __init__.
        calls = {BackendName.TORCH: lambda jobs: self.torch_backend.to_async.generate(jobs),
                 BackendName.ONNX: lambda jobs: self.onnx_backend.to_async.generate(jobs)}
        statuses = {BackendName.TORCH: lambda: self.torch_backend.to_async.status(),
                    BackendName.ONNX: lambda: self.onnx_backend.to_async.status()}
        self.router = Router(Backend(primary, telemetry.traced_call(primary, calls[primary]), statuses[primary]),
                             Backend(fallback, telemetry.traced_call(fallback, calls[fallback], fallback_for=primary),
                                     statuses[fallback]) if fallback else None,
                             CONFIG.primary_timeout_s, on_fallback=telemetry.on_fallback,
                             deadline_s=CONFIG.request_timeout_s)
        self.health = BackendHealth(statuses, routed=[primary] + ([fallback] if fallback else []))
        self.tokenizer = ModelTokenizer(stored.path_of(HF_SUBDIR))
        self.drift = drift.start_monitor(CONFIG.drift_reference or Path(stored.path_of(HF_SUBDIR)) / drift.REFERENCE_FILE,
                                         CONFIG.drift_window, CONFIG.drift_min_dialogues)
        self.feedback_store = open_store(CONFIG)
        self.flow = Flow(LongDialogues(self.router, self.tokenizer, CONFIG.long_dialogue, self.context_tokens), steps=[
            # The cache first: a hit is not inspected again (the statistics come back with it, serving/inspection.py)
            response_cache.from_config(CONFIG, stored),
            InputInspection.configured(CONFIG, self.tokenizer, self.context_tokens, observe=self.drift.observe),
            RecordAnswers(self.feedback_store, CONFIG.feedback_retain_text, CONFIG.feedback_retention_days)])
        freeze_startup_objects()  # full collections stalled the probes for up to 1.3 s under overload

    @bentoml.api(route="/summarize", input_spec=SummarizeRequest)
    async def summarize(self, dialogue: str, generation: Optional[GenerationOptions] = None) -> Summary:
        started = time.perf_counter()
        try:
            [summary] = await self._summarize("/summarize", [dialogue], generation)
        except BackendUnavailable as exc:
            return _unavailable(exc)
        except Refusal as exc:
            return _refused(exc)
        summary.duration_ms = (time.perf_counter() - started) * 1000.0
        return summary

    @bentoml.api(route="/summarize_batch", input_spec=SummarizeBatchRequest)
    async def summarize_batch(self, dialogues: list[str],
                              generation: Optional[GenerationOptions] = None) -> SummaryBatch:
        started = time.perf_counter()
        try:
            summaries = await self._summarize("/summarize_batch", dialogues, generation)
        except BackendUnavailable as exc:
            return _unavailable(exc)
        except Refusal as exc:
            return _refused(exc)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        for summary in summaries:
            summary.duration_ms = elapsed_ms  # generated together: each waited for the whole list
        return SummaryBatch(summaries=summaries, duration_ms=elapsed_ms)

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    async def feedback(self, request_id: str, rating: Rating, corrected_summary: Optional[str] = None,
                       comment: Optional[str] = None) -> FeedbackReceipt:
        """Rate an answer by its request_id; a second feedback for the same request_id replaces the first."""
        return await answer_feedback(self.feedback_store, FeedbackRequest(
            request_id=request_id, rating=rating, corrected_summary=corrected_summary, comment=comment),
            retention_days=CONFIG.feedback_retention_days)

    async def model_info(self) -> ModelInfo:
        """GET /model (a route of ``ROUTES`` below: BentoML's APIs answer POST only)."""
        return ModelInfo(model=self.model_tag, context_tokens=self.context_tokens,
                         generation_defaults=self.defaults, primary=self.router.primary.name,
                         fallback=self.router.fallback.name if self.router.fallback else None,
                         backends=await self._backend_statuses())

    async def _backend_statuses(self) -> list[BackendStatus]:
        await self.health.refresh()
        return self.health.known()

    async def __is_ready__(self) -> bool:
        """Ready when a backend that requests are routed to has its model loaded (last known state, kept
        fresh in the background: a probe never waits for a busy backend)."""
        return await self.health.ready_now()

    async def _summarize(self, route: str, dialogues: list[str], options: GenerationOptions | None) -> list[Summary]:
        settings = self.defaults.resolve(options)
        with telemetry.summarize(self.model_tag, dialogues, settings) as observed:
            return await self.flow.run(dialogues, Call(self.model_tag, settings, route, observed))


def _refused(exc: Refusal):
    return error_response(exc.status, exc.code, exc.message, field=exc.field, allowed=exc.allowed)


def _unavailable(exc: BackendUnavailable):
    return error_response(503, ErrorCode.UNAVAILABLE, f"no backend could summarize: {exc}",
                          headers={"Retry-After": "5"})


async def _model_route(_request) -> JSONResponse:
    return JSONResponse((await bentoml.get_current_service().model_info()).model_dump(mode="json"))


@functools.cache
def _openapi() -> dict:
    return published_spec(DialogueSummarizer, REQUEST_MODELS, ModelInfo, api_keys=CONFIG.api_keys_on,
                          protect_metrics=CONFIG.metrics_require_key,
                          rate_limited=bool(CONFIG.rate_limit_per_minute),
                          route_errors={"/feedback": FEEDBACK_ERRORS},
                          refused_languages=CONFIG.other_languages == "refuse")


async def _openapi_route(_request) -> JSONResponse:
    return JSONResponse(_openapi())


# Mounted after BentoML's own routes and before its /docs.json, which this one replaces (serving/openapi.py).
DialogueSummarizer.mount_asgi_app(Starlette(routes=[Route("/model", _model_route, methods=["GET"]),
                                                    Route("/docs.json", _openapi_route, methods=["GET"])]), path="/")
DialogueSummarizer.mount_asgi_app(page_app(), path="/")  # the web page at /ui/ (GET / leads there), Swagger at /docs

# Middlewares, outermost first.
if telemetry.enabled():  # outermost of ours: also counts what the others reject
    DialogueSummarizer.add_asgi_middleware(RequestTelemetry, paths=list(SUMMARIZE_ROUTES))
DialogueSummarizer.add_asgi_middleware(ErrorBodies)  # BentoML's and Starlette's own errors as ErrorBody
if (api_keys := CONFIG.key_source()) is not None:  # before the body is read and before admission: a flood
    # without a key takes no capacity
    DialogueSummarizer.add_asgi_middleware(ApiKeyAuth, keys=api_keys, on_key=telemetry.on_api_key,
                                           rate_limit_per_minute=CONFIG.rate_limit_per_minute,
                                           protect_metrics=CONFIG.metrics_require_key,
                                           page_paths=PUBLIC_PAGE_PATHS, page_prefix=PUBLIC_PAGE_PREFIX)
DialogueSummarizer.add_asgi_middleware(BodyLimits, max_bytes=CONFIG.body_limit(1), timeout_s=CONFIG.body_timeout_s,
                                       max_bytes_by_path={"/summarize_batch": CONFIG.body_limit(CONFIG.max_list_items),
                                                          "/feedback": feedback_body_limit()})
DialogueSummarizer.add_asgi_middleware(RequestValidation, models=REQUEST_MODELS)  # bad input never takes a slot
DialogueSummarizer.add_asgi_middleware(AdmissionControl, max_pending=CONFIG.max_pending_requests,
                                       paths=list(SUMMARIZE_ROUTES))  # a feedback never waits behind generation
