"""What the sync and async clients share: request bodies, reading answers, and turning failures into ClientErrors.

Kept free of I/O so both clients send and read exactly the same thing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from client.errors import ServiceError, ServiceUnreachable, UnexpectedAnswer
from feedback.protocol import FeedbackRequest
from serving.errors import ErrorBody
from serving.protocol import GenerationOptions

DEFAULT_URL = "http://localhost:3000"
API_KEY_ENV = "SUMMARIZER_API_KEY"
PROBE_TIMEOUT_S = 5.0
RETRIES = 1  # times a request that got no answer because its connection dropped or was refused is sent again
RETRY_DELAY_S = 0.2  # before sending it again: a killed API worker's sibling accepts at once
Answer = TypeVar("Answer", bound=BaseModel)
Generation = GenerationOptions | Mapping | None


def service_url(url: str) -> str:
    """The service's base URL without a trailing slash; anything but http(s)://host[:port][/path] is refused."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"invalid summarizer URL {url!r} ({exc}); expected e.g. {DEFAULT_URL}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"the summarizer URL must be http(s)://HOST[:PORT], e.g. {DEFAULT_URL}; got {url!r}")
    return str(url).rstrip("/")


def auth_headers(api_key: str | None) -> dict[str, str]:
    """``Authorization: Bearer`` with ``api_key``, else with $SUMMARIZER_API_KEY; none when neither is set."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        return {}
    if not all(33 <= ord(c) <= 126 for c in key):
        # Said without the key: error messages end up in logs.
        raise ValueError(f"the API key ({'api_key=' if api_key is not None else API_KEY_ENV}) may only hold "
                         "printable ASCII characters without spaces")
    return {"Authorization": f"Bearer {key}"}


def timeouts(timeout_s: float, connect_timeout_s: float) -> httpx.Timeout:
    # pool=None: a request waiting for a free connection of a busy pool is queued, not failed; once sent,
    # the read timeout bounds it.
    return httpx.Timeout(timeout_s, connect=connect_timeout_s, pool=None)


def probe_timeout(timeout: httpx.Timeout) -> httpx.Timeout:
    """A readiness probe waits seconds, not a summary's worth: a hung service is simply not ready."""
    return httpx.Timeout(min(timeout.read or PROBE_TIMEOUT_S, PROBE_TIMEOUT_S), connect=timeout.connect)


def generation_body(generation: Generation) -> dict | None:
    """Settings as sent: a dict is validated with GenerationOptions here (pydantic's error), unset ones left out."""
    if generation is None:
        return None
    options = generation if isinstance(generation, GenerationOptions) else GenerationOptions.model_validate(generation)
    return options.model_dump(exclude_none=True) or None


def summarize_body(dialogue: str, generation: Generation) -> dict:
    return _with_generation({"dialogue": dialogue}, generation)


def batch_body(dialogues: Sequence[str], generation: Generation) -> dict:
    return _with_generation({"dialogues": list(dialogues)}, generation)


def _with_generation(body: dict, generation: Generation) -> dict:
    settings = generation_body(generation)
    return body if settings is None else {**body, "generation": settings}


def feedback_body(request_id: str, rating: str, corrected_summary: str | None, comment: str | None) -> dict:
    """A POST /feedback body, validated here first (pydantic's error for a bad value); unset fields left out."""
    return FeedbackRequest(request_id=request_id, rating=rating, corrected_summary=corrected_summary,
                           comment=comment).model_dump(mode="json", exclude_none=True)


def retryable(exc: httpx.TransportError) -> bool:
    """A request worth sending once more: its connection was refused, reset or closed before an answer (the
    service's process died or restarts; summarizing is idempotent). Never a timeout: a service too slow to
    answer in time would only get the same work twice."""
    if isinstance(exc, httpx.TimeoutException):
        return False
    return isinstance(exc, (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError))


def unreachable(url: str, exc: httpx.TransportError, timeout: httpx.Timeout) -> ServiceUnreachable:
    """The ClientError for a request that got no answer, with the cause in words."""
    if isinstance(exc, httpx.ConnectTimeout):
        cause = f"no connection within {timeout.connect:g} s (connect timeout)"
    elif isinstance(exc, httpx.ReadTimeout):
        cause = f"no answer within {timeout.read:g} s (read timeout)"
    elif isinstance(exc, httpx.TimeoutException):
        cause = f"timed out ({type(exc).__name__})"
    elif isinstance(exc, httpx.RemoteProtocolError):
        cause = f"the connection closed before an answer ({exc})"
    else:
        cause = _os_cause(exc, httpx.URL(url).host)
    return ServiceUnreachable(url, cause)


def _os_cause(exc: BaseException, host: str) -> str:
    """The operating system's reason behind a connect error (httpx wraps it, the async path twice)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return f"cannot resolve the host name {host!r} ({seen.strerror})"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror[0].lower() + seen.strerror[1:]
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def checked(response: httpx.Response, url: str) -> httpx.Response:
    """The response when it is a 2xx, else the ServiceError that says what the service answered."""
    if response.is_success:
        return response
    retry_after_s = _retry_after_s(response.headers.get("retry-after"))
    error = _error_body(response)
    if error is None:  # not the service's ErrorBody: a proxy's page, or another server on that port
        text = " ".join(response.text.split())
        raise ServiceError(url, response.request.url.path, response.status_code,
                           text[:500] or response.reason_phrase or "no message", None, retry_after_s)
    raise ServiceError(url, response.request.url.path, response.status_code, error.message, error.code,
                       retry_after_s, error.field)


def parse(response: httpx.Response, url: str, model: type[Answer]) -> Answer:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise UnexpectedAnswer(url, response.request.url.path, describe_errors(exc.errors())) from None


def parse_json(response: httpx.Response, url: str) -> dict:
    try:
        answer = response.json()
    except ValueError as exc:
        raise UnexpectedAnswer(url, response.request.url.path, f"not JSON ({exc})") from None
    if not isinstance(answer, dict):
        raise UnexpectedAnswer(url, response.request.url.path, f"a JSON {type(answer).__name__}, not an object")
    return answer


def describe_errors(errors: Sequence[Mapping]) -> str:
    """Pydantic's error list as one line: 'where: what; ...'."""
    parts = []
    for error in errors:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.get("loc", ())).lstrip(".")
        what = str(error.get("msg", "")).removeprefix("Value error, ")
        # The service's own messages already start with the field ("dialogues[2]: ..."): say it once.
        parts.append(what if not where or what.startswith(where.split("[")[0]) else f"{where}: {what}")
    return "; ".join(parts)


def _error_body(response: httpx.Response) -> ErrorBody | None:
    try:
        return ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return None


def _retry_after_s(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: the service never sends one
