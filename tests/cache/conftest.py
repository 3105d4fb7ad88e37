"""Fixtures of the cache tests: a real redis-server per test that needs one."""

from __future__ import annotations

import pytest

from tests.cache.redis_server import NOT_INSTALLED, REDIS_SERVER, RedisServer


@pytest.fixture
def redis_server(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip(NOT_INSTALLED)
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        if server.running():
            server.resume()
        server.stop(grace_s=5)
