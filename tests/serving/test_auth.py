"""serving/auth.py without a server: key parsing and matching, the token bucket's Retry-After, the middleware's
answers, and configuration errors that never print a key. The real service: test_api_keys.py."""

from __future__ import annotations

import hashlib
import json

import pytest

from serving.auth import (ApiKeyAuth, ApiKeyError, KeySet, KeySource, RateLimiter, bearer_token, key_id,
                          parse_key_file)
from serving.config import ConfigError, ServingConfig

pytestmark = pytest.mark.anyio
KEY = "abcdefghijklmnop-0123"
OTHER = "qrstuvwxyzabcdef-4567"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_key_id_is_a_sha256_prefix():
    assert key_id(KEY) == hashlib.sha256(KEY.encode()).hexdigest()[:12]


def test_a_key_set_matches_exact_keys_only():
    keys = KeySet.of([KEY, OTHER, KEY])
    assert len(keys) == 2
    assert keys.match(KEY) == key_id(KEY) and keys.match(OTHER) == key_id(OTHER)
    for wrong in ("", KEY[:-1], KEY + "x", KEY.upper(), " " + KEY):
        assert keys.match(wrong) is None
    assert KEY not in repr(keys)


@pytest.mark.parametrize("header, token", [
    (b"Bearer abc", "abc"), (b"bearer  abc ", "abc"), (b"Basic abc", None), (b"Bearer", None), (b"abc", None)])
def test_bearer_token(header, token):
    assert bearer_token([(b"authorization", header)]) == token


def test_key_file_lines_comments_and_errors_that_name_the_line_not_the_key(tmp_path):
    assert parse_key_file(f"# keys\n\n  {KEY}  \n#{OTHER}\n{OTHER}\n", "keys") == [KEY, OTHER]
    with pytest.raises(ApiKeyError) as raised:
        parse_key_file(f"{KEY}\nshort-key\n", "keys")
    assert "keys line 2" in str(raised.value) and "short-key" not in str(raised.value)
    with pytest.raises(ApiKeyError, match="no API keys"):
        (tmp_path / "empty").write_text("# nothing yet\n")
        KeySource(path=tmp_path / "empty")


def test_a_key_file_is_reread_when_it_changes_and_kept_when_it_goes(tmp_path):
    path = tmp_path / "keys"
    path.write_text(KEY + "\n")
    source = KeySource(path=path)
    assert source.keys().match(KEY) and not source.keys().match(OTHER)
    path.write_text(OTHER + "\n")
    assert source.keys().match(OTHER) and not source.keys().match(KEY)
    path.unlink()
    assert source.keys().match(OTHER)  # an unreadable file keeps the last keys read


def test_the_token_bucket_says_when_a_token_is_back():
    now = [100.0]
    limiter = RateLimiter(per_minute=6, clock=lambda: now[0])  # a token every 10 s
    assert [limiter.retry_after_s("a") for _ in range(6)] == [0] * 6
    assert limiter.retry_after_s("a") == 10
    assert limiter.retry_after_s("b") == 0  # each key has its own bucket
    now[0] += 4.5
    assert limiter.retry_after_s("a") == 6  # 5.5 s left, in whole seconds rounded up
    now[0] += 6
    assert limiter.retry_after_s("a") == 0


async def call(app, path: str, headers: list[tuple[bytes, bytes]], method: str = "GET") -> tuple[int, dict, dict]:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "path": path, "method": method, "headers": headers}, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body or b"{}")


async def ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(scope.get("state", {})).encode()})


async def test_the_middleware_answers_401_429_and_lets_probes_and_metrics_through(tmp_path):
    seen = []
    app = ApiKeyAuth(ok_app, KeySource([KEY]), rate_limit_per_minute=2, on_key=seen.append)
    bearer = [(b"authorization", f"Bearer {KEY}".encode())]
    status, headers, body = await call(app, "/summarize", [])
    assert (status, headers["www-authenticate"], body["code"]) == (401, 'Bearer realm="summarizer"', "unauthorized")
    assert (await call(app, "/summarize", [(b"authorization", b"Bearer " + OTHER.encode())]))[0] == 401
    for path in ("/livez", "/readyz", "/healthz", "/metrics"):
        assert (await call(app, path, []))[0] == 200
    assert await call(app, "/model", bearer) == (200, {}, {"api_key_id": key_id(KEY)})
    assert seen == [key_id(KEY)]
    assert (await call(app, "/model", bearer))[0] == 200
    status, headers, body = await call(app, "/model", bearer)
    assert (status, headers["retry-after"], body["code"]) == (429, "30", "rate_limited")
    closed = []

    async def collect(message):
        closed.append(message)

    await app({"type": "websocket", "path": "/summarize", "headers": []}, None, collect)
    assert closed == [{"type": "websocket.close", "code": 1008}]
    protected = ApiKeyAuth(ok_app, KeySource([KEY]), protect_metrics=True)
    assert (await call(protected, "/metrics", []))[0] == 401


async def test_the_web_page_loads_without_a_key_and_nothing_else_does():
    app = ApiKeyAuth(ok_app, KeySource([KEY]), page_paths={"/", "/ui"}, page_prefix="/ui/")
    for path in ("/", "/ui", "/ui/", "/ui/app.js", "/ui/style.css"):
        assert (await call(app, path, []))[0] == 200, path
        assert (await call(app, path, [], method="HEAD"))[0] == 200, path
    # Only reading the page's files: another method, another path, or a dot-segment (the server hands the path
    # percent-decoded, so "/ui/%2e%2e/model" arrives as "/ui/../model") needs the key.
    for method, path in [("POST", "/ui/"), ("PUT", "/ui/app.js"), ("POST", "/"), ("DELETE", "/ui"), ("GET", "/uix"),
                         ("GET", "/docs"), ("GET", "/docs.json"), ("GET", "/model"), ("GET", "/ui/../model")]:
        assert (await call(app, path, [], method=method))[0] == 401, (method, path)
    # Without page paths (the default) the page is no exception.
    assert (await call(ApiKeyAuth(ok_app, KeySource([KEY])), "/ui/", []))[0] == 401


def test_configuration_errors_never_print_a_key(tmp_path):
    with pytest.raises(ConfigError) as raised:
        ServingConfig.load({"SUMMARIZER_API_KEYS": f"{KEY},tooshort-secret"})
    assert "SUMMARIZER_API_KEYS=<hidden>: item 2" in str(raised.value)
    assert "tooshort-secret" not in str(raised.value) and KEY not in str(raised.value)
    (tmp_path / "keys").write_text("tooshort-secret\n")
    with pytest.raises(ConfigError) as raised:
        ServingConfig.load({"SUMMARIZER_API_KEYS_FILE": str(tmp_path / "keys")})
    assert "line 1" in str(raised.value) and "tooshort-secret" not in str(raised.value)
    with pytest.raises(ConfigError, match="SUMMARIZER_RATE_LIMIT_PER_MINUTE limits each API key"):
        ServingConfig.load({"SUMMARIZER_RATE_LIMIT_PER_MINUTE": "60"})
    config = ServingConfig.load({"SUMMARIZER_API_KEYS": KEY})
    assert KEY not in repr(config) and KEY not in str(config.model_dump())
    assert ServingConfig.load({}).key_source() is None
