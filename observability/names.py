"""Names the summarizer's telemetry uses: metrics (with their instruments), attributes, buckets.

Metric names as emitted over OTLP. After the usual OTLP -> Prometheus translation (dots to underscores,
unit suffix, "_total" on counters) they read as in ``PROMETHEUS_NAMES``; alerts.yml and the dashboard use
those.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVICE_NAMESPACE = "dialogue-summarizer"
SCOPE = "summarizer"
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

REQUESTS = "summarizer.requests"
REQUEST_DURATION = "summarizer.request.duration"
REQUEST_TOKENS = "summarizer.request.tokens"
REQUESTS_IN_FLIGHT = "summarizer.requests.in_flight"
ERRORS = "summarizer.errors"
FALLBACKS = "summarizer.fallbacks"
QUEUE_DURATION = "summarizer.queue.duration"
BATCH_SIZE = "summarizer.batch.size"
BATCH_DURATION = "summarizer.batch.duration"
MODEL_INFO = "summarizer.model.info"
CACHE_LOOKUPS = "summarizer.cache.lookups"
CACHE_STORES = "summarizer.cache.stores"
# Input statistics of each dialogue (serving/inspection.py) and their drift from the model's training set
# (observability/drift.py).
INPUT_TOKENS = "summarizer.input.tokens"
INPUT_SPEAKERS = "summarizer.input.speakers"
INPUT_FRAGMENTED_WORDS = "summarizer.input.fragmented_words"
INPUT_DIALOGUES = "summarizer.input.dialogues"
INPUT_DRIFT_PSI = "summarizer.input.drift.psi"

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0,
                     30.0, 60.0, 120.0)
TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 400, 600, 800, 1000, 1200, 1600, 2048, 4096, 8192)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# The input statistics' buckets are also the bins of their reference distribution and of the PSI
# (observability/drift.py): changing one means recomputing the shipped reference_stats.json.
DIALOGUE_TOKEN_BUCKETS = (64, 128, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048, 4096)
SPEAKER_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 12)
FRAGMENTED_WORDS_BUCKETS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
# Languages named in the language label; any other identified language counts as "other" (a bounded label).
# "und": too short, or not identified with confidence (serving/inspection.py).
LABELLED_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "ru", "pl", "tr", "zh", "ja", "ko", "ar", "hi",
                      "und")
OTHER_LANGUAGE = "other"


@dataclass(frozen=True)
class Instrument:
    """One metric: what ``providers.create_instruments`` creates, and what the dashboards rely on."""

    name: str
    kind: str  # counter, histogram, up_down_counter, gauge
    unit: str
    description: str
    buckets: tuple[float, ...] | None = None


INSTRUMENTS = (
    Instrument(REQUESTS, "counter", "{request}", "Summarize requests answered, by route, backend and outcome."),
    Instrument(REQUEST_DURATION, "histogram", "s", "Time from receiving a summarize request to its response.",
               LATENCY_BUCKETS_S),
    Instrument(REQUEST_TOKENS, "histogram", "{token}", "Tokens of one successful request (all its dialogues), "
               "by gen_ai.token.type input or output.", TOKEN_BUCKETS),
    Instrument(REQUESTS_IN_FLIGHT, "up_down_counter", "{request}", "Summarize requests being served now."),
    Instrument(ERRORS, "counter", "{error}", "Requests that did not succeed, by error.type."),
    Instrument(FALLBACKS, "counter", "{fallback}", "Requests whose primary backend failed and that went to the "
               "fallback backend, by from, to and error.type (the primary's original error)."),
    Instrument(QUEUE_DURATION, "histogram", "s", "Time a dialogue waited before the backend batch that "
               "generated it started.", LATENCY_BUCKETS_S),
    Instrument(BATCH_SIZE, "histogram", "{dialogue}", "Dialogues generated together in one generate() call.",
               BATCH_BUCKETS),
    Instrument(BATCH_DURATION, "histogram", "s", "Time of one generate() call (one batch) in a backend.",
               LATENCY_BUCKETS_S),
    Instrument(MODEL_INFO, "gauge", "", "1 for the model each loaded backend serves (labels say which)."),
    Instrument(CACHE_LOOKUPS, "counter", "{dialogue}", "Dialogues looked up in the response cache, by "
               "summarizer.cache.result: hit, miss or error (the cache failed, timed out or is left alone after a "
               "failure: the dialogue is generated)."),
    Instrument(CACHE_STORES, "counter", "{dialogue}", "New summaries offered to the response cache, by "
               "summarizer.cache.result: stored, too_large (not stored) or error."),
    Instrument(INPUT_TOKENS, "histogram", "{token}", "Tokens of one dialogue as sent (before any cut to the "
               "model's context).", DIALOGUE_TOKEN_BUCKETS),
    Instrument(INPUT_SPEAKERS, "histogram", "{speaker}", "Distinct speakers (\"Name: ...\" lines) of one dialogue.",
               SPEAKER_BUCKETS),
    Instrument(INPUT_FRAGMENTED_WORDS, "histogram", "", "Share of one dialogue's words that the tokenizer splits "
               "into 3 or more pieces.", FRAGMENTED_WORDS_BUCKETS),
    Instrument(INPUT_DIALOGUES, "counter", "{dialogue}", "Dialogues received, by summarizer.language (identified; "
               "bounded: 'other', 'und') and summarizer.over_context (longer than the model's context)."),
    Instrument(INPUT_DRIFT_PSI, "gauge", "", "Population stability index of each input statistic "
               "(summarizer.statistic) over this API worker's last SUMMARIZER_DRIFT_WINDOW dialogues against "
               "the model's training set; > 0.2 is a significant shift."),
)

# The names above as Prometheus shows them after the usual OTLP translation (OpenTelemetry Collector's
# prometheus/prometheusremotewrite exporters, Prometheus' own OTLP receiver): dots become underscores, the
# unit is appended (s -> _seconds; {annotations} are dropped), counters end in _total, histograms expose
# _bucket/_sum/_count. Attributes become labels the same way (summarizer.backend -> summarizer_backend),
# service.name/service.namespace become job, service.instance.id instance.
PROMETHEUS_NAMES = {
    REQUESTS: "summarizer_requests_total",
    REQUEST_DURATION: "summarizer_request_duration_seconds",
    REQUEST_TOKENS: "summarizer_request_tokens",
    REQUESTS_IN_FLIGHT: "summarizer_requests_in_flight",
    ERRORS: "summarizer_errors_total",
    FALLBACKS: "summarizer_fallbacks_total",
    QUEUE_DURATION: "summarizer_queue_duration_seconds",
    BATCH_SIZE: "summarizer_batch_size",
    BATCH_DURATION: "summarizer_batch_duration_seconds",
    MODEL_INFO: "summarizer_model_info",
    CACHE_LOOKUPS: "summarizer_cache_lookups_total",
    CACHE_STORES: "summarizer_cache_stores_total",
    INPUT_TOKENS: "summarizer_input_tokens",
    INPUT_SPEAKERS: "summarizer_input_speakers",
    INPUT_FRAGMENTED_WORDS: "summarizer_input_fragmented_words",
    INPUT_DIALOGUES: "summarizer_input_dialogues_total",
    INPUT_DRIFT_PSI: "summarizer_input_drift_psi",
}
HISTOGRAMS = tuple(i.name for i in INSTRUMENTS if i.kind == "histogram")

# Attribute keys (OpenTelemetry semantic conventions where one fits; ours under "summarizer.").
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
OPERATION = "text_completion"  # the GenAI well-known operation closest to seq2seq summarization
ERROR_TYPE = "error.type"
API_KEY_ID = "summarizer.api_key.id"  # the SHA-256 prefix of the request's API key, never the key
HTTP_ROUTE = "http.route"
BACKEND = "summarizer.backend"
OUTCOME = "summarizer.outcome"
FALLBACK_FROM = "summarizer.fallback.from"
FALLBACK_TO = "summarizer.fallback.to"
CACHE_RESULT = "summarizer.cache.result"
CACHE_STORE = "summarizer.cache.store"  # memory or redis
CACHED_BACKEND = "cache"  # summarizer.backend of a request answered from the response cache alone
LANGUAGE = "summarizer.language"
OVER_CONTEXT = "summarizer.over_context"
STATISTIC = "summarizer.statistic"
