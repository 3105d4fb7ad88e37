"""Wire protocol: what clients send and receive, and what the public service sends its backends.

Kept apart from serving logic (as vLLM keeps its OpenAI protocol). Validation messages are written
for the person reading the 400: they say what was wrong and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator


class BackendName(StrEnum):
    """A backend service: each runs one engine in its own worker process."""

    TORCH = "torch"
    ONNX = "onnx"


class Device(StrEnum):
    CUDA = "cuda"
    CPU = "cpu"
    NONE = "none"  # a backend that loaded no model


class EngineName(StrEnum):
    """What produced a summary: a backend on a device (the ``backend`` field of a Summary)."""

    TORCH_CUDA = "torch-cuda"
    TORCH_CPU = "torch-cpu"
    ONNX_CPU = "onnx-cpu"

    @classmethod
    def of(cls, backend: BackendName, device: Device) -> EngineName:
        return cls(f"{BackendName(backend).value}-{Device(device).value}")

    @property
    def backend(self) -> BackendName:
        return {EngineName.TORCH_CUDA: BackendName.TORCH, EngineName.TORCH_CPU: BackendName.TORCH,
                EngineName.ONNX_CPU: BackendName.ONNX}[self]

    @property
    def device(self) -> Device:
        return Device.CUDA if self is EngineName.TORCH_CUDA else Device.CPU


class Role(StrEnum):
    PRIMARY = "primary"
    FALLBACK = "fallback"
    IDLE = "idle"  # neither: loads no model (PyTorch on a machine without a GPU, by default)


class GenerationOptions(BaseModel):
    """Optional per-request generation settings; anything left out takes the model's default."""

    model_config = ConfigDict(extra="forbid")

    num_beams: Optional[Annotated[int, Field(ge=1, le=8, strict=True)]] = None
    max_new_tokens: Optional[Annotated[int, Field(ge=1, le=512, strict=True)]] = None
    min_new_tokens: Optional[Annotated[int, Field(ge=0, le=512, strict=True)]] = None
    length_penalty: Optional[Annotated[float, Field(ge=0.0, le=5.0, allow_inf_nan=False, strict=True)]] = None
    no_repeat_ngram_size: Optional[Annotated[int, Field(ge=0, le=10, strict=True)]] = None
    # min_new_tokens above max_new_tokens is not refused: generation stops at max_new_tokens (as transformers'
    # generate() does). A cross-field rule has no JSON Schema form, and the published schema must accept
    # exactly what the service accepts (GenerationSettings.resolve keeps the two consistent).


class GenerationSettings(BaseModel):
    """Fully resolved settings: what a backend actually generates with. Hashable, for grouping."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_beams: int
    max_new_tokens: int
    min_new_tokens: int
    length_penalty: float
    no_repeat_ngram_size: int

    def resolve(self, options: GenerationOptions | None) -> GenerationSettings:
        """These settings (the model's defaults) overridden by a request's options."""
        if options is None:
            return self
        chosen = {k: v for k, v in options.model_dump().items() if v is not None}
        merged = self.model_copy(update=chosen)
        if merged.min_new_tokens > merged.max_new_tokens:
            # Only one of the two was given; keep the request's intent and stay consistent.
            merged = merged.model_copy(update={"min_new_tokens": min(merged.min_new_tokens, merged.max_new_tokens)})
        return merged


# "Whitespace" spelled out, so that the schema's pattern and the check below mean the same characters in every
# regex engine (pydantic's Rust regex, the ECMA regex of JSON Schema validators, Python's re): ``\s`` differs
# between them (U+0085, U+FEFF, U+001C-U+001F).
WHITESPACE = (" \t\n\v\f\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
              "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
NOT_WHITESPACE = "[^" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]"  # JSON Schema pattern


@dataclass(frozen=True)
class RequestLimits:
    """Request size limits (SUMMARIZER_MAX_DIALOGUE_CHARS, SUMMARIZER_MAX_LIST_ITEMS in serving/config.py)."""

    max_dialogue_chars: int = 20_000
    max_list_items: int = 32


def _check_dialogue(value: str, limits: RequestLimits) -> str:
    if not value.strip(WHITESPACE):
        raise ValueError("dialogue is empty or whitespace only; send the conversation text, "
                         "e.g. \"Amanda: I baked cookies.\\nJerry: Sure!\"")
    if len(value) > limits.max_dialogue_chars:
        raise ValueError(f"dialogue has {len(value)} characters; the limit is {limits.max_dialogue_chars} "
                         "(SUMMARIZER_MAX_DIALOGUE_CHARS)")
    return value


def _check_dialogues(values: list, limits: RequestLimits) -> list:
    if not values:
        raise ValueError(f"dialogues is an empty list; send between 1 and {limits.max_list_items} dialogues")
    if len(values) > limits.max_list_items:
        raise ValueError(f"dialogues has {len(values)} items; the limit is {limits.max_list_items} "
                         "(SUMMARIZER_MAX_LIST_ITEMS)")
    for i, value in enumerate(values):
        if isinstance(value, str):
            try:
                _check_dialogue(value, limits)
            except ValueError as exc:
                raise ValueError(f"dialogues[{i}]: {exc}") from None
    return values


def request_models(limits: RequestLimits = RequestLimits()) -> tuple[type[BaseModel], type[BaseModel]]:
    """(SummarizeRequest, SummarizeBatchRequest) with these limits, declared as schema constraints.

    The constraints are what the published OpenAPI schema shows; the "before" validators check the same
    limits first, so a 400 says what was wrong in words, with the setting that sets the limit.
    """
    dialogue = Annotated[str, Field(strict=True, min_length=1, max_length=limits.max_dialogue_chars,
                                    pattern=NOT_WHITESPACE, description="The conversation, one turn per line; "
                                    "not empty or whitespace only.")]

    class SummarizeRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")

        dialogue: dialogue
        generation: Optional[GenerationOptions] = None

        @field_validator("dialogue", mode="before")
        @classmethod
        def _dialogue_ok(cls, value: object) -> object:
            return _check_dialogue(value, limits) if isinstance(value, str) else value

    class SummarizeBatchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")

        dialogues: Annotated[list[dialogue], Field(strict=True, min_length=1, max_length=limits.max_list_items)]
        generation: Optional[GenerationOptions] = None

        @field_validator("dialogues", mode="before")
        @classmethod
        def _dialogues_ok(cls, values: object) -> object:
            return _check_dialogues(values, limits) if isinstance(values, list) else values

    return SummarizeRequest, SummarizeBatchRequest


# With the default limits, for clients and documentation; the service builds its own from its config.
SummarizeRequest, SummarizeBatchRequest = request_models()


class Notice(BaseModel):
    """Something the caller should know about an answer that is still a 200 (e.g. a language the model was
    not trained on)."""

    code: str = Field(description="Machine-readable, stable, e.g. 'language'.")
    message: str = Field(description="For people: what it means for this summary.")


class LongDialogueInfo(BaseModel):
    """How a dialogue longer than one window was read (serving/long_dialogue.py)."""

    windows: int = Field(description="Windows the dialogue was split into, at speaker turns; each summarized.")
    rounds: int = Field(description="1: the summary is the windows' summaries joined in order; more: the join "
                        "was summarized again (rounds - 1 times) because it was longer than "
                        "SUMMARIZER_LONG_SUMMARY_TOKENS.")
    window_tokens: int = Field(description="Most tokens of one window (SUMMARIZER_LONG_WINDOW_TOKENS).")
    generations: int = Field(description="Summaries generated for it in all rounds: its cost, in jobs.")
    generated_tokens: int = Field(description="Tokens generated for it in all rounds.")


class Summary(BaseModel):
    summary: str
    model: str = Field(description="Tag of the model in BentoML's model store.")
    backend: EngineName = Field(description="The engine that produced it: 'torch-cuda', 'torch-cpu' or 'onnx-cpu'.")
    input_tokens: int = Field(description="Dialogue tokens the model read (after truncation); for a long "
                              "dialogue, those of all its windows (with each window's special tokens).")
    output_tokens: int = Field(description="Tokens of the summary returned (for a long dialogue, of the summaries "
                               "it joins; long_dialogue.generated_tokens counts every round's).")
    truncated: bool = Field(description="True when the dialogue was cut to the model's context: the model did "
                            "not read all of it. False for a long dialogue read in windows.")
    long_dialogue: Optional[LongDialogueInfo] = Field(
        default=None, description="Set when the dialogue was longer than one window and read in windows; "
        "null when it fitted one.")
    fallback: bool = Field(default=False, description="True when the fallback backend produced it.")
    duration_ms: float = Field(default=0.0, description="Time in the service for this request.")
    request_id: str = Field(default="", description="Names this answer for POST /feedback.")
    cached: bool = Field(default=False, description="True when it was answered from the response cache.")
    warnings: list[Notice] = Field(default_factory=list, description="What the caller should know about it.")


class SummaryBatch(BaseModel):
    summaries: list[Summary]
    duration_ms: float


# --------------------------------------------------------------------------- public service -> backend


class GenerationJob(BaseModel):
    """One dialogue for a backend, with the settings it must be generated with."""

    text: str
    settings: GenerationSettings
    enqueued_at: float = Field(description="time.time() when the public service sent it (queue wait).")
    trace_context: dict[str, str] = Field(
        default_factory=dict, description="W3C trace context (traceparent) of the request that sent it: adaptive "
        "batching generates jobs of many requests together, each job's spans go to its own request's trace.")


class GenerationResult(BaseModel):
    summary: str
    input_tokens: int
    output_tokens: int
    truncated: bool
    backend: EngineName
    model: str
    batch_size: int = Field(description="Dialogues generated together in this one generate() call.")
    queue_wait_ms: float
    generate_ms: float
    padding_share: float = Field(description="Share of the padded input batch that was padding.")


class BackendFailure(BaseModel):
    """A backend's generate() failed: what it raised, so the caller's fallback decision and telemetry see
    the original error's type (a plain exception would reach the caller as an anonymous HTTP 500)."""

    backend: BackendName
    error_type: str = Field(description="Class name of the exception, e.g. 'RuntimeError'.")
    message: str


class GenerationOutcome(BaseModel):
    """One job's answer from a backend: its result, or why the backend could not produce it."""

    result: Optional[GenerationResult] = None
    failure: Optional[BackendFailure] = None


class BackendStatus(BaseModel):
    backend: BackendName
    loaded: bool
    role: Role
    device: Device
    model: str


class ModelInfo(BaseModel):
    """GET /model: the served model, its generation defaults and context, the routing, each backend's status."""

    model: str = Field(description="Tag of the model in BentoML's model store.")
    context_tokens: int = Field(description="Longest input the model reads; a longer dialogue is truncated.")
    generation_defaults: GenerationSettings
    primary: BackendName
    fallback: Optional[BackendName] = None
    backends: list[BackendStatus]
