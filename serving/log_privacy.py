"""No request content in the logs: BentoML's report of a request it refused is cut down to what went wrong.

BentoML logs every request whose body fails validation as an ERROR with the traceback of pydantic's
ValidationError, whose text quotes the offending input (``input_value='Anna: ...'``): a dialogue, whole or
cut, in the log of every 400. A client's bad request is not a server error either, and the access log
already has its 400. ``install()`` puts a filter on the logger BentoML reports it with, which turns such a
record into one INFO line with the error types and the number of errors, without the values or the
field names (a field name is the client's text too: an unknown generation setting).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

# BentoML's ``log_exception`` (bentoml/_internal/server/http_app.py), used by the new-style services' routes.
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"


def validation_error_of(record: logging.LogRecord) -> ValidationError | None:
    """The ValidationError a record's traceback is about (directly or as a cause), else None."""
    exc = record.exc_info[1] if record.exc_info else None
    while exc is not None:
        if isinstance(exc, ValidationError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class RefusedRequestFilter(logging.Filter):
    """Rewrites a record about a ValidationError: no traceback, no input values, no field names."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = validation_error_of(record)
        if error is None:
            return True
        kinds = sorted({e["type"] for e in error.errors(include_url=False, include_context=False,
                                                         include_input=False)})
        where = record.getMessage()  # BentoML's "Exception on /summarize [POST]": route and method only
        count = error.error_count()
        record.msg = "request refused: %s (%d validation error%s: %s; values not logged)"
        record.args = (where.removeprefix("Exception on ").strip(), count, "" if count == 1 else "s", ", ".join(kinds))
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def install() -> None:
    """Once per process, before BentoML serves (service.py's import)."""
    logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, RefusedRequestFilter) for f in logger.filters):
        logger.addFilter(RefusedRequestFilter())
