"""API keys (optional, off by default): ``Authorization: Bearer <key>`` on every route but the health probes.

    SUMMARIZER_API_KEYS="key1,key2"                  # keys in the environment
    SUMMARIZER_API_KEYS_FILE=/etc/summarizer/keys     # one key per line, '#' comments: a mounted Kubernetes Secret

The file is looked at again on every request (one ``stat``) and re-read when it changed: Kubernetes
updates a mounted Secret in place, so keys rotate without a restart. A file that becomes unreadable keeps
the last keys it had (fail closed: an empty file admits nobody).

A key is compared with every accepted key in constant time (``hmac.compare_digest`` on their SHA-256
digests, no early exit), so neither the timing nor the answer says which key was close. Requests are
attributed to a key id, the first 12 hex digits of the key's SHA-256 (``printf %s KEY | sha256sum``):
in the ASGI scope's state (``api_key_id``) and passed to ``on_key`` (service.py: telemetry puts it on the
request's server span). The key itself
is never logged, traced or echoed.

With ``SUMMARIZER_RATE_LIMIT_PER_MINUTE``, each key has a token bucket of that many requests, refilled
continuously: past it, 429 with ``Retry-After`` (whole seconds until a token is back). The buckets live in
the API worker process, so with N API workers a key gets up to N times the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from serving.errors import ErrorCode, send_error

logger = logging.getLogger(__name__)

# Kubernetes probes carry no credentials; they must answer without a key.
PROBE_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
METRICS_PATH = "/metrics"
KEY_ID_DIGITS = 12
MIN_KEY_CHARS = 16
GENERATE_HINT = "generate one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\""
CHALLENGE = 'Bearer realm="summarizer"'


class ApiKeyError(ValueError):
    """A key that cannot be used (too short, or characters a header cannot carry); never holds the key."""


def key_id(key: str) -> str:
    """The id a key is known by in logs, spans and metrics: a SHA-256 prefix (never the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:KEY_ID_DIGITS]


def check_key(key: str, where: str) -> str:
    """``key`` when it can be sent in a header and is long enough; else ApiKeyError saying ``where`` (not what)."""
    if len(key) < MIN_KEY_CHARS:
        raise ApiKeyError(f"{where}: a key must have at least {MIN_KEY_CHARS} characters ({GENERATE_HINT})")
    if not all(33 <= ord(c) <= 126 for c in key):
        raise ApiKeyError(f"{where}: a key may only hold printable ASCII characters without spaces "
                        f"({GENERATE_HINT})")
    return key


def parse_env_keys(raw: str) -> list[str]:
    """Comma-separated keys; blanks around them ignored."""
    items = [item.strip() for item in raw.split(",")]
    return [check_key(item, f"item {n}") for n, item in enumerate(items, 1) if item]


def parse_key_file(text: str, path: str | Path) -> list[str]:
    """One key per line; blank lines and lines starting with '#' ignored."""
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(check_key(line, f"{path} line {n}"))
    return keys


@dataclass(frozen=True)
class KeySet:
    """Accepted keys as SHA-256 digests (comparing digests keeps every comparison the same length)."""

    digests: tuple[tuple[bytes, str], ...] = field(default=(), repr=False)  # (digest, key id)

    @classmethod
    def of(cls, keys: Iterable[str]) -> KeySet:
        unique = dict.fromkeys(keys)
        return cls(tuple((hashlib.sha256(k.encode()).digest(), key_id(k)) for k in unique))

    def __len__(self) -> int:
        return len(self.digests)

    def match(self, presented: str) -> str | None:
        """The id of the accepted key equal to ``presented``, else None; every key is compared."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for accepted, kid in self.digests:
            if hmac.compare_digest(accepted, digest) and found is None:
                found = kid
        return found


class KeySource:
    """The accepted keys: those of the environment plus those of the file, the file re-read when it changes."""

    def __init__(self, env_keys: Iterable[str] = (), path: str | Path | None = None) -> None:
        self.env_keys = list(env_keys)
        self.path = Path(path) if path else None
        self._stamp: tuple | None = None
        self._keys = KeySet.of(self.env_keys)
        if self.path is not None:
            self._reload(strict=True)
        if not len(self._keys):
            raise ApiKeyError(f"no API keys in {self.describe()} ({GENERATE_HINT})")

    def describe(self) -> str:
        return " and ".join(filter(None, ["SUMMARIZER_API_KEYS" if self.env_keys else "",
                                          str(self.path) if self.path else ""])) or "SUMMARIZER_API_KEYS"

    def keys(self) -> KeySet:
        if self.path is not None:
            self._reload(strict=False)
        return self._keys

    def _reload(self, strict: bool) -> None:
        try:
            stat = self.path.stat()  # follows the symlinks Kubernetes swaps on an update
            stamp = (stat.st_ino, stat.st_dev, stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            file_keys = parse_key_file(self.path.read_text(encoding="utf-8"), self.path)
        except (OSError, UnicodeDecodeError, ApiKeyError) as exc:
            if strict:
                raise ApiKeyError(f"cannot read the API keys file {self.path}: {_reason(exc)}") from None
            if self._stamp != "failed":
                logger.warning("cannot read the API keys file %s (%s); keeping the %d keys read before",
                               self.path, _reason(exc), len(self._keys))
                self._stamp = "failed"
            return
        self._keys = KeySet.of([*self.env_keys, *file_keys])
        if self._stamp is not None:
            level = logging.INFO if len(self._keys) else logging.WARNING  # none: every request gets 401
            logger.log(level, "API keys reloaded from %s: %d keys", self.path, len(self._keys))
        self._stamp = stamp


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(exc)


@dataclass
class TokenBucket:
    """``capacity`` requests at once, refilled at ``capacity`` per minute."""

    capacity: float
    tokens: float
    updated: float = field(default_factory=time.monotonic)

    def take(self, now: float) -> float:
        """0 when a request may go (a token taken), else the seconds until a token is back."""
        rate = self.capacity / 60.0
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class RateLimiter:
    """A token bucket per key id (bounded: one per accepted key ever seen)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be at least 1, got {per_minute}")
        self.per_minute = per_minute
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}

    def retry_after_s(self, kid: str) -> int:
        """0 when ``kid`` may send this request now, else whole seconds to wait (at least 1)."""
        now = self.clock()
        bucket = self.buckets.get(kid)
        if bucket is None:
            bucket = self.buckets[kid] = TokenBucket(self.per_minute, self.per_minute, now)
        wait = bucket.take(now)
        return 0 if wait == 0 else max(1, math.ceil(wait))


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


class ApiKeyAuth:
    """ASGI middleware: 401 without a valid key, 429 past the key's rate; probes (and /metrics, unless told
    otherwise) pass without one, and so do GETs of the public pages (``page_paths``, and every path under
    ``page_prefix``): a browser opening a page sends no bearer header; the page's own API calls carry the key."""

    def __init__(self, app, keys: KeySource, *, rate_limit_per_minute: int = 0, protect_metrics: bool = False,
                 on_key: Callable[[str], None] | None = None, page_paths: Iterable[str] = (),
                 page_prefix: str | None = None) -> None:
        self.app = app
        self.keys = keys
        self.limiter = RateLimiter(rate_limit_per_minute) if rate_limit_per_minute else None
        self.open_paths = PROBE_PATHS if protect_metrics else PROBE_PATHS | {METRICS_PATH}
        self.page_paths = frozenset(page_paths)
        self.page_prefix = page_prefix
        self.on_key = on_key

    def _public_page(self, scope) -> bool:
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            return False
        path = scope.get("path", "")
        if ".." in path:  # nothing routes by a normalized path, but a dot-segment never passes without a key
            return False
        return path in self.page_paths or bool(self.page_prefix and path.startswith(self.page_prefix))

    async def __call__(self, scope, receive, send):
        if (scope["type"] not in ("http", "websocket") or scope.get("path") in self.open_paths
                or self._public_page(scope)):
            return await self.app(scope, receive, send)  # lifespan events, probes, the page's static files
        token = bearer_token(scope.get("headers", ()))
        kid = self.keys.keys().match(token) if token is not None else None
        if kid is None and scope["type"] == "websocket":  # none are served, but none may pass without a key
            await send({"type": "websocket.close", "code": 1008})
            return
        if kid is None:
            message = ("a valid API key is required: send 'Authorization: Bearer <key>'" if token is None
                       else "the API key is not valid")
            await send_error(send, 401, ErrorCode.UNAUTHORIZED, message, headers={"WWW-Authenticate": CHALLENGE})
            return
        scope.setdefault("state", {})["api_key_id"] = kid
        if self.on_key is not None:
            self.on_key(kid)
        if self.limiter is not None:
            wait_s = self.limiter.retry_after_s(kid)
            if wait_s and scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1013})  # "try again later"
                return
            if wait_s:
                await send_error(send, 429, ErrorCode.RATE_LIMITED,
                                 f"rate limit of {self.limiter.per_minute} requests per minute for this API key "
                                 f"(SUMMARIZER_RATE_LIMIT_PER_MINUTE); retry after {wait_s}s",
                                 headers={"Retry-After": str(wait_s)})
                return
        await self.app(scope, receive, send)


def from_config(env_keys: str | None, path: str | Path | None) -> KeySource | None:
    """The key source the settings describe, or None when API keys are off."""
    if not env_keys and not path:
        return None
    return KeySource(parse_env_keys(env_keys or ""), path)


__all__ = ["ApiKeyAuth", "KeySet", "KeySource", "ApiKeyError", "RateLimiter", "bearer_token", "from_config",
           "key_id"]
