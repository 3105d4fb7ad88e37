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
    UNKNOWN_REQUEST = "unknown_request"  # 404: POST /feedback names a request_id with no recorded answer
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    BODY_TIMEOUT = "body_timeout"  # 408: the body did not arrive in time
    BODY_TOO_LARGE = "body_too_large"  # 413
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    UNSUPPORTED_LANGUAGE = "unsupported_language"  # 422: a language the service is set to refuse (``allowed``)
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


# What BentoML's and Starlette's own error answers become (they have no hook for their bodies: see
# serving/validation_errors.py), by status.
_OWN_ERRORS = {
    400: (ErrorCode.INVALID_REQUEST, "the request is not valid"),
    404: (ErrorCode.NOT_FOUND, "no such route; the routes are listed at /docs.json"),
    405: (ErrorCode.METHOD_NOT_ALLOWED, "method not allowed on this route"),
    413: (ErrorCode.BODY_TOO_LARGE, "request body too large"),
    415: (ErrorCode.UNSUPPORTED_MEDIA_TYPE, "content-type must be application/json"),
    500: (ErrorCode.INTERNAL, "internal error; the service log has the details"),
    503: (ErrorCode.UNAVAILABLE, "service not ready"),
    504: (ErrorCode.TIMEOUT, "no answer within the request timeout"),
}


class ErrorBodies:
    """ASGI middleware, outermost of ours: an error answer from BentoML or Starlette itself (the router's 404
    and 405, the 503 of /readyz, BentoML's 500 and 415) leaves with an ErrorBody for its status, the rest of
    its headers (``Allow``, ``Retry-After``) kept; an exception that escapes the app becomes a 500 ErrorBody.
    Our own ErrorBody answers pass untouched. Only error answers are held (they are small); 2xx stream through.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: dict | None = None
        chunks: list[bytes] = []
        started = False

        async def reshape(message) -> None:
            nonlocal held, started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400:
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _send_reshaped(send, held, b"".join(chunks))
                return
            await send(message)

        try:
            await self.app(scope, receive, reshape)
        except Exception:
            if started:
                raise
            await send_error(send, 500, ErrorCode.INTERNAL, _OWN_ERRORS[500][1])
            raise  # Starlette's ServerErrorMiddleware logs it (and sends nothing more: the answer has started)


async def _send_reshaped(send, start: dict, body: bytes) -> None:
    try:
        ErrorBody.model_validate_json(body)
        payload = body  # already ours
    except ValueError:
        status = start["status"]
        code, message = _OWN_ERRORS.get(status, (ErrorCode.INTERNAL if status >= 500 else ErrorCode.INVALID_REQUEST,
                                                 f"HTTP {status}"))
        allow = dict(start.get("headers", ())).get(b"allow", b"").decode("latin-1")
        payload = error_body(code, f"{message}; allowed: {allow}" if status == 405 and allow else message)
    headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() not in (b"content-type", b"content-length")]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
