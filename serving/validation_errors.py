"""A request body checked against its route's model before BentoML parses it, its errors answered as ErrorBody.

BentoML 1.4 has no hook for the body of its validation 400: ``api_endpoint_wrapper`` (in
``_bentoml_impl/server/app.py``) catches pydantic's ``ValidationError`` from the IO descriptor and answers
``{"error": "1 validation error for SummarizeRequestIODescriptor", "detail": [...]}`` (pydantic's URLs
included); a ``BentoMLException`` raised from an IO descriptor becomes ``[{"error": str(exc)}]``; Starlette's
exception handlers are never reached, since that wrapper catches everything. So ``RequestValidation`` checks the
body with the same model first, in the ASGI chain (after ``BodyLimits`` bounded it), and answers what is wrong in
ErrorBody's words; a body that passes goes on to BentoML unchanged and validates there the same way (the second
validation costs about a millisecond for the largest allowed batch).

``explain`` is the translation: the first problem (pydantic reports all of them) with its field as
``dialogues[2]`` / ``generation.num_beams``, a message that says what is allowed, never the input value (it may
be the dialogue), never a class name or a pydantic URL; an unknown field gets ``unknown_field`` and the names
allowed there.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ValidationError

from serving.body_limits import replaying
from serving.errors import ErrorBody, ErrorCode, send_error

JSON_MEDIA_TYPES = ("application/json",)

# pydantic's messages for these types say "Input should ..." about the whole body: say what the body must be.
_BODY_MESSAGES = {"model_type": "the request body must be a JSON object", "dict_type": "must be a JSON object"}


def field_path(loc: Sequence[str | int]) -> str | None:
    """pydantic's error location as the request field: ("dialogues", 2) -> "dialogues[2]"."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model that holds the fields at ``loc`` (the root model for an empty location)."""
    current: object = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _the_model_in(current.model_fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _the_model_in(annotation: object) -> object:
    """Optional[X], list[X], Annotated[X, ...] -> X (the first BaseModel found, else the annotation)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _the_model_in(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def _message(error: Mapping) -> str:
    kind = error["type"]
    if kind in _BODY_MESSAGES and not error["loc"]:
        return _BODY_MESSAGES[kind]
    if kind == "string_pattern_mismatch":
        return "must not be empty or whitespace only"
    if kind == "missing":
        return "is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:] if message.startswith(("Input", "Field", "String", "List")) else message


def explain(exc: ValidationError, model: type[BaseModel]) -> ErrorBody:
    """The first of the validation errors of ``model`` as an ErrorBody (see the module's docstring)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    # An unknown field first: a misspelt name also makes the right one "missing", and the list of the allowed
    # names answers both.
    errors.sort(key=lambda error: error["type"] != "extra_forbidden")
    first = errors[0]
    more = f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} in this request)" \
        if len(errors) > 1 else ""
    loc = tuple(first["loc"])
    if first["type"] == "json_invalid":
        return ErrorBody(code=ErrorCode.INVALID_JSON,
                         message=f"the body is not valid JSON in UTF-8 ({first['msg'].removeprefix('Invalid JSON: ')})")
    if first["type"] == "extra_forbidden":
        holder = _model_at(model, loc[:-1])
        allowed = list(holder.model_fields) if holder else None
        where = f" in {field_path(loc[:-1])}" if loc[:-1] else ""
        name = str(loc[-1])[:64]  # a field name the client chose: shown, but never a long one
        return ErrorBody(code=ErrorCode.UNKNOWN_FIELD, field=field_path(loc), allowed=allowed,
                         message=f"unknown field {name!r}{where}; allowed: {', '.join(allowed or [])}{more}")
    field = field_path(loc)
    message = _message(first)
    return ErrorBody(code=ErrorCode.INVALID_REQUEST, field=field,
                     message=(f"{field}: {message}" if field and not message.startswith(field) else message) + more)


class RequestValidation:
    """ASGI middleware: POST bodies of the routes in ``models`` validated first; a bad one answered 400 at once.

    Also answers 415 for a body that is not JSON (BentoML would parse any media type as JSON, and answer its
    own 415 for pickles only).
    """

    def __init__(self, app, models: Mapping[str, type[BaseModel]]) -> None:
        self.app = app
        self.models = dict(models)

    async def __call__(self, scope, receive, send):
        model = self.models.get(scope.get("path")) if scope["type"] == "http" else None
        if model is None or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        media_type = _media_type(scope)
        if media_type is not None and media_type not in JSON_MEDIA_TYPES:
            await send_error(send, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                             f"content-type must be application/json, not {media_type[:64]!r}")
            return
        body, receive = await read_body(receive)
        if body is None:
            return  # the client went away before its body was complete: nobody to answer
        try:
            model.model_validate_json(body or b"{}")  # an empty body reads as {} (as BentoML's JSON serde does)
        except ValidationError as exc:
            error = explain(exc, model)
            await send_error(send, 400, error.code, error.message, field=error.field, allowed=error.allowed)
            return
        await self.app(scope, receive, send)


def _media_type(scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower() or None
    return None


async def read_body(receive):
    """The whole body (None when the client went away first), and a ``receive`` that gives it again, then
    whatever the client sends next."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, replaying(body, receive)
