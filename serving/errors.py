"""One error shape for every route: what a client gets whenever the answer is not a 2xx.

    {"code": "invalid_request", "message": "dialogue is empty ...", "field": "dialogue", "allowed": null}

``code`` is for machines (stable, one of ErrorCode), ``message`` for people (what was wrong and what is
allowed), ``field`` the offending request field when there is one (``dialogues[2]``, ``generation.num_beams``)
and ``allowed`` the accepted names when the field is unknown. No internal class names, no tracebacks.
Middlewares (admission, body limits, API keys) send it with ``send_error``; routes return ``error_response``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Optional

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse


class ErrorCode(StrEnum):
    """Why a request was refused, for machines (load balancers, clients, load tests)."""

    INVALID_REQUEST = "invalid_request"  # 400: a value is wrong; ``field`` says which
    UNKNOWN_FIELD = "unknown_field"  # 400: a field the route does not take; ``allowed`` lists those it does
    INVALID_JSON = "invalid_json"  # 400: the body is not JSON (or not UTF-8)
    UNAUTHORIZED = "unauthorized"  # 401: no API key, or not a valid one
    NOT_FOUND = "not_found"  # 404
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    BODY_TIMEOUT = "body_timeout"  # 408: the body did not arrive in time
    BODY_TOO_LARGE = "body_too_large"  # 413
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    RATE_LIMITED = "rate_limited"  # 429: this key's request rate; retry after Retry-After
    INTERNAL = "internal"  # 500: a bug of ours; the message never carries the exception
    OVERLOADED = "overloaded"  # 503: past SUMMARIZER_MAX_PENDING; retry after Retry-After (1 s)
    UNAVAILABLE = "unavailable"  # 503: no backend could answer; retry after Retry-After (5 s)
    TIMEOUT = "timeout"  # 504: no answer within the request timeout


class ErrorBody(BaseModel):
    """The body of every error answer."""

    code: ErrorCode = Field(description="Machine-readable reason; stable across versions.")
    message: str = Field(description="What was wrong and what is allowed, for people.")
    field: Optional[str] = Field(default=None, description="The offending request field, e.g. 'dialogues[2]'.")
    allowed: Optional[list[str]] = Field(default=None, description="For an unknown field: the fields allowed there.")


def error_body(code: ErrorCode, message: str, *, field: str | None = None,
               allowed: list[str] | None = None) -> bytes:
    return ErrorBody(code=code, message=message, field=field, allowed=allowed).model_dump_json().encode()


def error_response(status: int, code: ErrorCode, message: str, *, field: str | None = None,
                   allowed: list[str] | None = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(code=code, message=message, field=field, allowed=allowed)
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=dict(headers or {}))


async def send_error(send, status: int, code: ErrorCode, message: str, *, field: str | None = None,
                     allowed: list[str] | None = None, headers: Mapping[str, str] | None = None) -> None:
    """Answer an ASGI request with an ErrorBody (for middlewares that refuse before the app runs)."""
    body = error_body(code, message, field=field, allowed=allowed)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
