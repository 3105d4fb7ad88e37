"""What a call to the summarizer can fail with: one line each, naming the service's URL and the cause."""

from __future__ import annotations

from serving.errors import ErrorCode


class ClientError(Exception):
    """Base of every error the summarizer client raises (bad generation settings stay pydantic's)."""


class ServiceUnreachable(ClientError):
    """No answer from the service: connection refused, unknown host, connect or read timeout, dropped connection."""

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(f"cannot reach the summarizer at {url}: {cause}")


class ServiceError(ClientError):
    """The service answered with a status other than 2xx.

    ``message`` is the body's human text (the ``message`` of the service's ErrorBody), ``code`` its
    machine-readable code and ``field`` the offending field (None for bodies that are not an ErrorBody:
    a proxy's page) and ``retry_after_s`` the Retry-After header in seconds (None when absent).
    """

    def __init__(self, url: str, route: str, status: int, message: str, code: ErrorCode | None = None,
                 retry_after_s: float | None = None, field: str | None = None) -> None:
        self.url = url
        self.route = route
        self.status = status
        self.message = message
        self.code = code
        self.field = field
        self.retry_after_s = retry_after_s
        retry = f" (retry after {retry_after_s:g} s)" if retry_after_s is not None else ""
        super().__init__(_one_line(f"the summarizer at {url} answered {status} to {route}: {message}{retry}"))


class UnexpectedAnswer(ClientError):
    """A 2xx answer that is not what the route returns (another service on that port, or a version mismatch)."""

    def __init__(self, url: str, route: str, problem: str) -> None:
        self.url = url
        self.route = route
        super().__init__(_one_line(f"the answer of {url} to {route} is not the summarizer's: {problem}"))


def _one_line(text: str) -> str:
    return " ".join(text.split())
