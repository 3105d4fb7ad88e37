"""API keys on a real ``bentoml serve`` of the tiny BART: one server with keys from the environment and from
a file (rotated in place, as Kubernetes does with a mounted Secret) and a low per-key rate limit.

Each test uses keys of its own, so that one test's requests never spend another's rate-limit tokens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from client import AsyncSummarizerClient, ServiceError, SummarizerClient
from harness import bentoml_serve

DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"
RATE_PER_MINUTE = 30
ENV_KEY = "env-key-0123456789abcdef"
ROUTES_KEY = "routes-key-0123456789abcdef"
LIMITED_KEY = "limited-key-0123456789abcdef"
CLIENT_KEY = "client-key-0123456789abcdef"
OLD_KEY = "rotated-out-0123456789abcdef"
NEW_KEY = "rotated-in-0123456789abcdef"
FILE_KEYS = (ROUTES_KEY, LIMITED_KEY, CLIENT_KEY, OLD_KEY)

# Every route of the public service with a request that succeeds with a key (cheap ones: no long generation).
ROUTES = [
    ("POST", "/summarize", {"dialogue": DIALOGUE, "generation": {"max_new_tokens": 2, "num_beams": 1}}),
    ("POST", "/summarize_batch", {"dialogues": [DIALOGUE], "generation": {"max_new_tokens": 2, "num_beams": 1}}),
    ("GET", "/model", None),
    ("GET", "/docs.json", None),
    ("GET", "/docs", None),  # BentoML's Swagger page (GET / leads to the web page, whose files are public)
]
PROBES = ["/livez", "/readyz", "/healthz"]


def write_keys_like_kubernetes(directory: Path, keys: list[str], generation: int) -> None:
    """What the kubelet does to a mounted Secret: write a new timestamped directory, then swap the ``..data``
    symlink; ``keys`` itself is a symlink to ``..data/keys``."""
    data = directory / f"..{generation}"
    data.mkdir()
    (data / "keys").write_text("# API keys of the summarizer\n\n" + "\n".join(keys) + "\n")
    link = directory / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, directory / "..data")
    if not (directory / "keys").is_symlink():
        (directory / "keys").symlink_to("..data/keys")


@pytest.fixture(scope="module")
def secret_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("secret")
    write_keys_like_kubernetes(directory, list(FILE_KEYS), 1)
    return directory


@pytest.fixture(scope="module")
def server(tiny_model, serve_env, secret_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = serve_env(tiny_model, SUMMARIZER_API_KEYS=ENV_KEY, SUMMARIZER_API_KEYS_FILE=str(secret_dir / "keys"),
                    SUMMARIZER_RATE_LIMIT_PER_MINUTE=str(RATE_PER_MINUTE))
    with bentoml_serve(log, env) as served:
        yield served
    log_text = log.read_text(errors="replace")
    for key in (ENV_KEY, *FILE_KEYS, NEW_KEY, "wrong-key-0123456789abcdef"):
        assert key not in log_text, "an API key reached the service's log"


def send(server, method: str, path: str, body: dict | None, key: str | None = None,
         scheme: str = "Bearer") -> httpx.Response:
    headers = {"Authorization": f"{scheme} {key}"} if key else {}
    return httpx.request(method, server.url + path, json=body, headers=headers, timeout=60)


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer realm="summarizer"'
    body = response.json()
    assert body["code"] == "unauthorized" and body["field"] is None


@pytest.mark.parametrize("method, path, body", ROUTES, ids=[r[1] for r in ROUTES])
def test_every_route_needs_a_valid_key(server, method, path, body):
    assert_unauthorized(send(server, method, path, body))
    assert_unauthorized(send(server, method, path, body, key="wrong-key-0123456789abcdef"))
    assert_unauthorized(send(server, method, path, body, key=ROUTES_KEY, scheme="Basic"))
    assert send(server, method, path, body, key=ROUTES_KEY).status_code == 200


def test_an_unknown_route_says_401_not_404_without_a_key(server):
    assert_unauthorized(send(server, "GET", "/admin", None))
    assert send(server, "GET", "/admin", None, key=ROUTES_KEY).status_code == 404


def test_a_key_from_the_environment_is_accepted(server):
    assert send(server, "GET", "/model", None, key=ENV_KEY).status_code == 200


def test_the_answer_names_no_key_and_no_internals(server):
    body = send(server, "GET", "/model", None, key="wrong-key-0123456789abcdef").json()
    assert body["message"] == "the API key is not valid"
    assert "wrong-key" not in str(body)


@pytest.mark.parametrize("path", ["/", "/ui", "/ui/", "/ui/app.js"])
def test_the_web_page_loads_without_a_key(server, path):
    assert httpx.get(server.url + path, timeout=10).status_code in (200, 307)
    assert httpx.get(server.url + path, timeout=10, follow_redirects=True).status_code == 200


@pytest.mark.parametrize("path", PROBES)
def test_health_probes_need_no_key(server, path):
    assert httpx.get(server.url + path, timeout=10).status_code == 200


def test_metrics_are_open_by_default(server):
    response = httpx.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200 and "# TYPE" in response.text


def test_keys_rotate_with_the_mounted_file(server, secret_dir):
    assert send(server, "GET", "/model", None, key=OLD_KEY).status_code == 200
    assert_unauthorized(send(server, "GET", "/model", None, key=NEW_KEY))
    write_keys_like_kubernetes(secret_dir, [ROUTES_KEY, LIMITED_KEY, CLIENT_KEY, NEW_KEY], 2)
    assert send(server, "GET", "/model", None, key=NEW_KEY).status_code == 200
    assert_unauthorized(send(server, "GET", "/model", None, key=OLD_KEY))
    assert send(server, "GET", "/model", None, key=ENV_KEY).status_code == 200  # the environment's stay


def test_a_key_past_its_rate_gets_429_with_retry_after(server):
    answers = []
    for _ in range(3 * RATE_PER_MINUTE):  # the bucket holds RATE_PER_MINUTE; a few refill while we send
        answers.append(send(server, "GET", "/docs.json", None, key=LIMITED_KEY))
        if answers[-1].status_code != 200:
            break
    limited = answers[-1]
    assert limited.status_code == 429, [a.status_code for a in answers]
    assert len(answers) > RATE_PER_MINUTE  # the whole burst went through first
    assert limited.json()["code"] == "rate_limited"
    # One token comes back every 60/RATE_PER_MINUTE = 2 s: at most that, rounded up to whole seconds.
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 60 // RATE_PER_MINUTE
    # Another key is not limited by this one's rate.
    assert send(server, "GET", "/model", None, key=ENV_KEY).status_code == 200
    time.sleep(retry_after)
    assert send(server, "GET", "/docs.json", None, key=LIMITED_KEY).status_code == 200


def test_the_client_sends_the_key_of_the_environment(server, monkeypatch):
    monkeypatch.setenv("SUMMARIZER_API_KEY", CLIENT_KEY)
    with SummarizerClient(server.url) as summarizer:
        assert summarizer.summarize(DIALOGUE, {"max_new_tokens": 2, "num_beams": 1}).summary is not None
        assert summarizer.ready()
    monkeypatch.delenv("SUMMARIZER_API_KEY")
    with SummarizerClient(server.url) as summarizer:
        with pytest.raises(ServiceError) as raised:
            summarizer.model()
    assert raised.value.status == 401 and raised.value.code == "unauthorized"
    assert CLIENT_KEY not in str(raised.value)


@pytest.mark.anyio
async def test_the_async_client_takes_a_key_argument(server):
    async with AsyncSummarizerClient(server.url, api_key=CLIENT_KEY) as summarizer:
        assert (await summarizer.model())["model"]
    async with AsyncSummarizerClient(server.url, api_key="wrong-key-0123456789abcdef") as summarizer:
        with pytest.raises(ServiceError) as raised:
            await summarizer.model()
    assert raised.value.code == "unauthorized"


def test_the_cli_reads_the_key_from_the_environment(server, tmp_path):
    dialogue = tmp_path / "chat.txt"
    dialogue.write_text(DIALOGUE)
    command = [sys.executable, "-m", "client", str(dialogue), "--url", server.url, "--max-new-tokens", "2"]
    env = {k: v for k, v in os.environ.items() if k != "SUMMARIZER_API_KEY"}
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "401" in refused.stderr and "API key" in refused.stderr
    served = subprocess.run(command, env={**env, "SUMMARIZER_API_KEY": CLIENT_KEY}, capture_output=True,
                            text=True, timeout=120)
    assert served.returncode == 0, served.stderr
    assert served.stdout.startswith("chat.txt: ")
    assert CLIENT_KEY not in served.stdout + served.stderr


@pytest.fixture
def anyio_backend():
    return "asyncio"
