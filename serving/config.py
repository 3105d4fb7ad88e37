"""Serving configuration: one validated model, filled from ``SUMMARIZER_*`` environment variables.

Loaded once, where the service starts (service.py), and passed to what needs it; nothing else reads the
environment. Every setting has a default that works on a laptop without a GPU; an invalid value stops the
service at start-up with one line per problem that names the variable and what is allowed, never at the
first request. The README's configuration table lists the same variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Literal, Optional

from pathlib import Path

from pydantic import (AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator,
                      model_validator)
from pydantic_settings import (BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource,
                               SettingsConfigDict)
from pydantic_settings.sources.utils import parse_env_vars

from model_store.layout import DEFAULT_MODEL_NAME
from serving import auth
from serving.protocol import BackendName, RequestLimits

ENV_PREFIX = "SUMMARIZER_"
CACHE_URL_SCHEMES = ("redis://", "rediss://", "unix://")


class ConfigError(ValueError):
    """Invalid SUMMARIZER_* settings; the message has one line per problem."""


class Faults(BaseModel):
    """Fault injection for drills and tests: SUMMARIZER_INJECT_FAULT="torch:error,onnx:hang"."""

    model_config = ConfigDict(frozen=True)

    error: frozenset[BackendName] = frozenset()
    hang: frozenset[BackendName] = frozenset()

    @classmethod
    def parse(cls, raw: str) -> Faults:
        chosen: dict[str, set[BackendName]] = {"error": set(), "hang": set()}
        for item in filter(None, (part.strip() for part in raw.split(","))):
            backend, _, kind = item.partition(":")
            if backend not in BackendName.__members__.values() or kind not in chosen:
                raise ValueError(f"item {item!r} must be BACKEND:error or BACKEND:hang with BACKEND one of "
                                 f"{', '.join(BackendName)}, e.g. 'torch:error'")
            chosen[kind].add(BackendName(backend))
        return cls(error=frozenset(chosen["error"]), hang=frozenset(chosen["hang"]))


def _env(name: str) -> AliasChoices:
    return AliasChoices(ENV_PREFIX + name)


# The variables ``ServingConfig.load`` reads: the process environment, or the mapping it was given.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("serving_config_environ", default=None)


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading ``load``'s mapping instead of ``os.environ``."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _ENVIRON.get()
        return parse_env_vars(os.environ if environ is None else environ, self.case_sensitive,
                              self.env_ignore_empty, self.env_parse_none_str)


class ServingConfig(BaseSettings):
    """What ``bentoml serve service:DialogueSummarizer`` reads from the environment (``SUMMARIZER_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore", env_ignore_empty=True,
                                      protected_namespaces=())

    model_tag: Annotated[str, Field(validation_alias=_env("MODEL"))] = f"{DEFAULT_MODEL_NAME}:latest"
    # "auto": PyTorch on CUDA when a GPU is visible, else ONNX Runtime on CPU.
    primary: Literal["auto", "torch", "onnx"] = "auto"
    # "auto": the other backend when the primary is PyTorch on a GPU; none when ONNX is primary
    # (loading PyTorch on CPU as a fallback for CPU ONNX would hold a second model for little gain).
    fallback: Literal["auto", "none", "torch", "onnx"] = "auto"
    primary_timeout_s: Annotated[float, Field(ge=0.1, le=3600.0)] = 30.0
    max_dialogue_chars: Annotated[int, Field(ge=1, le=1_000_000)] = 20_000
    max_list_items: Annotated[int, Field(ge=1, le=1024)] = 32
    max_batch_size: Annotated[int, Field(ge=1, le=1024)] = 32  # 1: no adaptive batching
    max_latency_ms: Annotated[int, Field(ge=10, le=600_000)] = 20_000
    max_pending_requests: Annotated[int, Field(validation_alias=_env("MAX_PENDING"), ge=1, le=100_000)] = 64
    request_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 120
    # Processes of the public (HTTP) service, sharing one socket: one killed, the others go on serving.
    api_workers: Annotated[int, Field(ge=1, le=64)] = 2
    # 0: derived from the dialogue limits, per route (body_limit below)
    max_body_bytes: Annotated[int, Field(ge=0, le=1 << 30)] = 0
    body_timeout_s: Annotated[float, Field(ge=0.1, le=3600.0)] = 30.0
    onnx_threads: Annotated[int, Field(ge=0, le=1024)] = 0  # 0: one per core
    torch_threads: Annotated[int, Field(ge=0, le=1024)] = 0
    faults: Annotated[Faults, NoDecode, Field(validation_alias=_env("INJECT_FAULT"))] = Faults()
    # API keys (serving/auth.py): off unless one of these is set. A SecretStr: never printed, not even in
    # a configuration error.
    api_keys: Optional[SecretStr] = None
    api_keys_file: Optional[Path] = None
    # /metrics stays open by default, like TGI's and Triton's: Prometheus scrapes it without credentials
    # and it carries no request content. True: it needs a key too.
    metrics_require_key: bool = False
    rate_limit_per_minute: Annotated[int, Field(ge=0, le=1_000_000)] = 0  # per API key and API worker; 0: off
    # Long dialogues (serving/long_dialogue.py): one longer than a window is read in windows split at speaker
    # turns, each summarized, the summaries joined. False: cut to the model's context (truncated: true), as before.
    long_dialogues: bool = True
    # Most tokens of a window, special tokens included; above the model's context, the context. Windows are cut
    # where conversations end (serving/conversation_boundaries.py) and where they must, to fit. Chosen by
    # bench/long_dialogue.py on joined DialogSum VALIDATION dialogues (README, "Long dialogues").
    long_window_tokens: Annotated[int, Field(ge=16, le=100_000)] = 320
    # A dialogue up to this many tokens is read whole (one job, capped at the model's context); a longer one in
    # windows of LONG_WINDOW_TOKENS. Chosen by bench/long_dialogue.py on joined DialogSum VALIDATION dialogues
    # (k = 1, 2), not the test ones the README reports (README, "Long dialogues").
    long_from_tokens: Annotated[int, Field(ge=16, le=100_000)] = 384
    # A joined summary longer than this is summarized again, in windows (at most LONG_MAX_ROUNDS rounds in all).
    # A bound, not the usual path: summarizing the join again scores far below joining (README, "Long
    # dialogues"), and at the request limit the default model's join is some 950 tokens (33 windows).
    long_summary_tokens: Annotated[int, Field(ge=16, le=100_000)] = 2048
    long_max_rounds: Annotated[int, Field(ge=1, le=10)] = 3
    # A directory with one file per setting, named like its variable (SUMMARIZER_FEEDBACK_URL, ...): a mounted
    # Kubernetes Secret (deploy/components/shared-state). pydantic-settings' secrets_dir; a variable in the
    # environment wins over a file. Files keep secrets out of the environment, which every child process
    # inherits and crash reports and `env` print.
    secrets_dir: Optional[Path] = None
    # Response cache (cache/): the same (model, generation settings, dialogue) answered from the cache.
    # In each API worker's memory by default; in Redis, shared by every worker and replica, when a URL is set.
    cache: bool = True  # SUMMARIZER_CACHE=off switches it off (on/off, true/false, 1/0)
    # redis://[:password@]host:port/db, rediss:// (TLS) or unix:// (a socket); a SecretStr: it may hold a
    # password, never printed
    cache_url: Optional[SecretStr] = None
    cache_max_entries: Annotated[int, Field(ge=1, le=100_000_000)] = 10_000  # per API worker (memory only)
    cache_max_bytes: Annotated[int, Field(ge=1024, le=1 << 40)] = 32 * 1024 * 1024  # per API worker (memory only)
    cache_ttl_s: Annotated[int, Field(ge=1, le=365 * 86_400)] = 86_400  # an older entry is never answered
    # One lookup or store; a cache slower than this counts as failed (the request goes on without it)
    cache_timeout_s: Annotated[float, Field(ge=0.001, le=10.0)] = 0.1
    cache_backoff_s: Annotated[float, Field(ge=0.1, le=3600.0)] = 5.0  # after a failure, left alone this long
    cache_max_value_bytes: Annotated[int, Field(ge=256, le=64 * 1024 * 1024)] = 64 * 1024  # a larger answer: not stored
    # Feedback (feedback/): every answer recorded under its request_id for POST /feedback. SQLite (WAL) at
    # feedback_path, by default $BENTOML_HOME/feedback/feedback.sqlite3; PostgreSQL when feedback_url is
    # postgresql://... (a SecretStr: it may hold a password).
    feedback_url: Optional[SecretStr] = None
    feedback_path: Optional[Path] = None
    # Off: only sha256 hashes of the dialogue and the summary are kept, and the export cannot make pairs.
    feedback_retain_text: bool = False
    # Answers (and their feedback) older than this are deleted, hourly; 0 keeps them forever.
    feedback_retention_days: Annotated[int, Field(ge=0, le=36_500)] = 90
    # Input inspection (serving/inspection.py) and drift (observability/drift.py).
    # The languages the model summarizes (ISO 639-1 codes, comma-separated); another identified language is
    # answered with a warning ("warn"), refused with 422 unsupported_language ("refuse"), or let be ("ignore").
    languages: Annotated[tuple[str, ...], NoDecode] = ("en",)
    other_languages: Literal["warn", "refuse", "ignore"] = "warn"
    # A language is named only with at least this confidence and this many letters (speaker names left
    # out); otherwise it is "und" (undetermined), which is never warned about.
    language_min_confidence: Annotated[float, Field(ge=0.5, le=1.0)] = 0.9
    language_min_letters: Annotated[int, Field(ge=1, le=100_000)] = 20
    # The training set's binned statistics; default: reference_stats.json of the served model. Absent: no PSI.
    drift_reference: Optional[Path] = None
    drift_window: Annotated[int, Field(ge=10, le=1_000_000)] = 1000  # dialogues per API worker
    drift_min_dialogues: Annotated[int, Field(ge=1, le=1_000_000)] = 100  # no PSI before this many

    @field_validator("languages", mode="before")
    @classmethod
    def _language_codes(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(code.strip().lower() for code in value.split(",") if code.strip())
        if isinstance(value, (tuple, list)):
            bad = [c for c in value if not (isinstance(c, str) and c.isalpha() and c.isascii() and 2 <= len(c) <= 3)]
            if bad or not value:
                raise ValueError("must be ISO 639-1 language codes separated by commas, e.g. 'en' or 'en,de'")
        return value

    @field_validator("other_languages", mode="before")
    @classmethod
    def _lowercase_policy(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("api_keys")
    @classmethod
    def _usable_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            auth.parse_env_keys(value.get_secret_value())
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _readable_keys_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            auth.KeySource(path=value)  # raises with the file's line, never the key
        return value

    @field_validator("cache_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip().lower().startswith(CACHE_URL_SCHEMES):
            raise ValueError("must be a Redis URL: redis://host:port/db, rediss://host:port/db (TLS) or "
                             "unix:///path/to/redis.sock")
        return value

    @field_validator("feedback_url")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a PostgreSQL URL, postgresql://USER:PASSWORD@HOST:PORT/DATABASE (leave it "
                             "unset for SQLite at SUMMARIZER_FEEDBACK_PATH)")
        return value

    @model_validator(mode="after")
    def _rate_limit_needs_keys(self) -> ServingConfig:
        if self.rate_limit_per_minute and not self.api_keys_on:
            raise ValueError("SUMMARIZER_RATE_LIMIT_PER_MINUTE limits each API key: set SUMMARIZER_API_KEYS or "
                             "SUMMARIZER_API_KEYS_FILE too (or 0 to switch it off)")
        return self

    @property
    def api_keys_on(self) -> bool:
        return self.api_keys is not None or self.api_keys_file is not None

    def key_source(self) -> auth.KeySource | None:
        """The accepted API keys (the file re-read when it changes), or None when API keys are off."""
        return auth.from_config(self.api_keys.get_secret_value() if self.api_keys else None, self.api_keys_file)

    @field_validator("model_tag")
    @classmethod
    def _with_version(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must name a stored model, e.g. dialogue-bart-small:latest")
        return value if ":" in value else f"{value}:latest"

    @field_validator("primary", "fallback", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("faults", mode="before")
    @classmethod
    def _parse_faults(cls, value: object) -> object:
        return Faults.parse(value) if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _EnvironSource(settings_cls), file_secret_settings

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> ServingConfig:
        """The configuration from ``environ`` (the process environment by default), nothing else.

        Raises ConfigError with one line per invalid variable: its name, the value and what is allowed.
        """
        token = _ENVIRON.set(environ)
        try:
            return cls(_secrets_dir=_secrets_dir(os.environ if environ is None else environ))
        except ValidationError as exc:
            raise ConfigError(_explain(exc, environ)) from None
        finally:
            _ENVIRON.reset(token)

    from_env = load

    @property
    def limits(self) -> RequestLimits:
        return RequestLimits(max_dialogue_chars=self.max_dialogue_chars, max_list_items=self.max_list_items)

    @property
    def long_dialogue(self):
        """How long dialogues are read (a ``serving.long_dialogue.LongDialogueSettings``), None when off."""
        from serving.long_dialogue import LongDialogueSettings

        return LongDialogueSettings(window_tokens=self.long_window_tokens, long_from_tokens=self.long_from_tokens,
                                    summary_tokens=self.long_summary_tokens,
                                    max_rounds=self.long_max_rounds) if self.long_dialogues else None

    @property
    def pod_admission_limit(self) -> int:
        """Requests one service (pod) admits at once: each API worker counts its own SUMMARIZER_MAX_PENDING."""
        return self.max_pending_requests * self.api_workers

    def body_limit(self, dialogues: int) -> int:
        """Most bytes a request body may have when it carries up to ``dialogues`` dialogues:
        SUMMARIZER_MAX_BODY_BYTES when set, else room for that many dialogues of the longest allowed length
        written the longest way JSON writes them (6 bytes a character: ``\\uXXXX``, what Python's json.dumps
        and httpx send for non-ASCII text) plus 16 KiB for the rest (field names, generation settings)."""
        return self.max_body_bytes or dialogues * self.max_dialogue_chars * 6 + 16 * 1024

    def routing(self, cuda_available: bool) -> tuple[BackendName, BackendName | None]:
        """(primary, fallback) backends for this machine."""
        primary = BackendName(self.primary) if self.primary != "auto" else (
            BackendName.TORCH if cuda_available else BackendName.ONNX)
        if self.fallback == "none":
            return primary, None
        if self.fallback == "auto":
            return primary, (BackendName.ONNX if primary is BackendName.TORCH else None)
        fallback = BackendName(self.fallback)
        return primary, (fallback if fallback is not primary else None)


# Settings whose values a configuration error must not print.
SECRET_VARIABLES = frozenset({ENV_PREFIX + "API_KEYS", ENV_PREFIX + "CACHE_URL", ENV_PREFIX + "FEEDBACK_URL"})


def _secrets_dir(environ: Mapping[str, str]) -> Path | None:
    """SUMMARIZER_SECRETS_DIR, read before the other settings since they are read from it."""
    raw = next((v for k, v in environ.items() if k.upper() == ENV_PREFIX + "SECRETS_DIR" and v), None)
    if raw is None:
        return None
    if not Path(raw).is_dir():
        raise ConfigError(f"invalid serving configuration:\n  {ENV_PREFIX}SECRETS_DIR={raw!r}: must be a directory "
                          "with one file per setting, named like its variable (a mounted Kubernetes Secret)")
    return Path(raw)


def env_name(field: str) -> str:
    """The environment variable of a ServingConfig field."""
    alias = ServingConfig.model_fields[field].validation_alias
    return alias.choices[0] if isinstance(alias, AliasChoices) else ENV_PREFIX + field.upper()


def _explain(exc: ValidationError, environ: Mapping[str, str] | None) -> str:
    environ = os.environ if environ is None else environ
    secrets = _secrets_dir(environ)
    by_alias = {env_name(name).upper(): name for name in ServingConfig.model_fields}
    lines = []
    for error in exc.errors(include_url=False):
        key = str(error["loc"][0]) if error["loc"] else ""
        variable = key.upper() if key.upper() in by_alias else env_name(key) if key in ServingConfig.model_fields \
            else ENV_PREFIX + key.upper()
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a rule across settings: its message names them
            lines.append(message)
            continue
        from_file = variable not in environ and secrets is not None and (secrets / variable).is_file()
        shown = "<hidden>" if variable in SECRET_VARIABLES else \
            f"<file {secrets / variable}>" if from_file else repr(environ.get(variable, ""))
        lines.append(f"{variable}={shown}: {message}")
    return "invalid serving configuration:\n  " + "\n  ".join(lines)
