"""serving/validation_errors.py and ErrorBodies (serving/errors.py) without a server: pydantic's errors in ErrorBody's
words, and BentoML's and Starlette's own error answers in ErrorBody's shape. The same on a real server:
tests/serving/test_service.py."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from serving.errors import ErrorBodies, ErrorBody, ErrorCode, error_body
from serving.protocol import request_models
from serving.validation_errors import RequestValidation, explain, field_path

Single, Batch = request_models()
SECRET = "Canary-Zanzibar-1234"


def explained(model, raw: str) -> ErrorBody:
    with pytest.raises(ValidationError) as failed:
        model.model_validate_json(raw)
    return explain(failed.value, model)


def test_field_paths_read_as_the_request_writes_them():
    assert field_path(("dialogues", 2)) == "dialogues[2]"
    assert field_path(("generation", "num_beams")) == "generation.num_beams"
    assert field_path(()) is None


@pytest.mark.parametrize("model,raw,code,field,words", [
    (Single, '{"dialogue": 42}', ErrorCode.INVALID_REQUEST, "dialogue", "dialogue: input should be a valid string"),
    (Single, '{"dialogue": "A: hi", "generation": {"num_beams": 9}}', ErrorCode.INVALID_REQUEST,
     "generation.num_beams", "less than or equal to 8"),
    (Batch, '{"dialogues": ["A: hi", 3]}', ErrorCode.INVALID_REQUEST, "dialogues[1]", "valid string"),
    (Single, '{}', ErrorCode.INVALID_REQUEST, "dialogue", "dialogue: is required"),
    (Single, '[]', ErrorCode.INVALID_REQUEST, None, "must be a JSON object"),
    (Single, '{"dialogue": ', ErrorCode.INVALID_JSON, None, "not valid JSON"),
])
def test_a_validation_error_becomes_an_error_body(model, raw, code, field, words):
    error = explained(model, raw)
    assert (error.code, error.field) == (code, field) and words in error.message, error
    assert "pydantic" not in error.message and "IODescriptor" not in error.message


def test_an_unknown_field_lists_the_allowed_ones_first_even_among_other_errors():
    error = explained(Batch, '{"dialogue": "A: hi", "generation": {"num_beams": 0}}')
    assert (error.code, error.field, error.allowed) == (ErrorCode.UNKNOWN_FIELD, "dialogue", ["dialogues", "generation"])
    assert "2 more problems" in error.message
    nested = explained(Single, '{"dialogue": "A: hi", "generation": {"temperature": 0.7}}')
    assert nested.field == "generation.temperature" and "num_beams" in nested.allowed


@pytest.mark.parametrize("raw", [
    f'{{"dialogue": "{SECRET * 2000}"}}', f'{{"dialogue": ["{SECRET}"]}}', f'{{"dialogues": ["{SECRET}", 1]}}',
    f'{{"dialogue": "A", "generation": {{"num_beams": "{SECRET}"}}}}', f'{{"dialogue": "{SECRET}',
])
def test_the_input_is_never_echoed(raw):
    model = Batch if "dialogues" in raw else Single
    assert SECRET not in explained(model, raw).model_dump_json()


class Recorder:
    def __init__(self):
        self.sent = []

    async def __call__(self, message):
        self.sent.append(message)


def call(app, method="POST", path="/summarize", body=b"", headers=()):
    recorder = Recorder()

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    asyncio.run(app(scope, receive, recorder))
    return recorder.sent


def plain(status, text, headers=()):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain"), *headers]})
        await send({"type": "http.response.body", "body": text})
    return app


def test_starlette_own_errors_leave_as_error_bodies_with_their_headers():
    start, body = call(ErrorBodies(plain(405, b"Method Not Allowed", [(b"allow", b"POST")])))
    assert start["status"] == 405 and (b"allow", b"POST") in start["headers"]
    error = ErrorBody.model_validate_json(body["body"])
    assert error.code == ErrorCode.METHOD_NOT_ALLOWED and "POST" in error.message
    [(_, content_type)] = [h for h in start["headers"] if h[0] == b"content-type"]
    assert content_type == b"application/json"
    start, body = call(ErrorBodies(plain(404, b"Not Found")))
    assert ErrorBody.model_validate_json(body["body"]).code == ErrorCode.NOT_FOUND


def test_our_own_error_bodies_and_successes_pass_untouched():
    ours = error_body(ErrorCode.OVERLOADED, "busy")
    assert call(ErrorBodies(plain(503, ours)))[1]["body"] == ours
    assert call(ErrorBodies(plain(200, b"fine")))[1]["body"] == b"fine"


def test_an_exception_becomes_a_500_error_body():
    async def broken(scope, receive, send):
        raise RuntimeError(f"the dialogue was {SECRET}")

    recorder = Recorder()

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    with pytest.raises(RuntimeError):  # still raised: Starlette's ServerErrorMiddleware logs it
        asyncio.run(ErrorBodies(broken)({"type": "http", "method": "GET", "path": "/"}, receive, recorder))
    start, body = recorder.sent
    error = ErrorBody.model_validate_json(body["body"])
    assert start["status"] == 500 and error.code == ErrorCode.INTERNAL and SECRET not in error.message


def test_request_validation_answers_before_the_app():
    reached = []

    async def app(scope, receive, send):
        reached.append((await receive())["body"])

    validation = RequestValidation(app, {"/summarize": Single})
    start, body = call(validation, body=b'{"dialogue": 1}', headers=[(b"content-type", b"application/json")])
    assert start["status"] == 400 and not reached
    assert call(validation, body=b'{"dialogue": "A: hi"}') == [] and reached == [b'{"dialogue": "A: hi"}']
    start, _ = call(validation, body=b"x", headers=[(b"content-type", b"text/csv")])
    assert start["status"] == 415
    call(validation, path="/livez", method="GET")  # other routes pass
    assert len(reached) == 2
