"""A long dialogue through a real ``bentoml serve`` (tiny BART, windows of 64 tokens so a modest dialogue is
long): read in windows, nothing truncated, and the CLI's text output says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness import bentoml_serve

REPO_ROOT = Path(__file__).resolve().parents[2]
WINDOW_TOKENS = 64
SHORT = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!"
MEETING = "\n".join(f"{name}: About item {i} on the agenda, I think we should decide it by Friday at the latest."
                    for i, name in enumerate(["Anna", "Ben", "Carla", "Dev"] * 3))  # 12 turns, about 250 tokens


@pytest.fixture(scope="module")
def server(tiny_model, serve_env, tmp_path_factory):
    env = serve_env(tiny_model, SUMMARIZER_LONG_WINDOW_TOKENS=str(WINDOW_TOKENS),
                    SUMMARIZER_LONG_FROM_TOKENS=str(WINDOW_TOKENS))
    with bentoml_serve(tmp_path_factory.mktemp("long") / "serve.log", env) as served:
        yield served


def test_a_long_dialogue_is_read_in_windows_and_not_truncated(server):
    response = httpx.post(f"{server.url}/summarize_batch", json={"dialogues": [SHORT, MEETING],
                                                                  "generation": {"max_new_tokens": 5}}, timeout=120)
    assert response.status_code == 200, response.text
    short, long = response.json()["summaries"]
    assert short["long_dialogue"] is None and short["truncated"] is False
    info = long["long_dialogue"]
    assert info["windows"] > 1 and info["rounds"] == 1 and info["window_tokens"] == WINDOW_TOKENS
    assert long["truncated"] is False
    assert long["input_tokens"] > WINDOW_TOKENS  # every window's tokens: more than one window holds
    # max_new_tokens applies to each window: the joined summary holds up to 5 tokens a window
    assert info["windows"] < long["output_tokens"] <= 5 * info["windows"]
    assert info["generations"] == info["windows"]


def test_the_cli_text_output_says_the_summary_was_made_from_windows(server, tmp_path):
    (tmp_path / "meeting.txt").write_text(MEETING)
    (tmp_path / "chat.txt").write_text(SHORT)
    done = subprocess.run([sys.executable, "-m", "client", str(tmp_path / "chat.txt"), str(tmp_path / "meeting.txt"),
                           "--url", server.url], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    chat, meeting = done.stdout.splitlines()
    assert chat.startswith("chat.txt: ") and "long dialogue" not in chat and "truncated" not in chat
    assert meeting.startswith("meeting.txt: ")
    assert meeting.endswith(f" windows of up to {WINDOW_TOKENS} tokens]")
    assert "[long dialogue: summarized in " in meeting


def test_the_cli_text_output_says_a_dialogue_was_truncated():
    from client.__main__ import how_it_was_read
    from serving.protocol import Summary

    cut = Summary(summary="s", model="m:1", backend="onnx-cpu", input_tokens=1024, output_tokens=3, truncated=True)
    assert how_it_was_read(cut) == ["truncated: only the first 1024 tokens of the dialogue were read"]
    assert how_it_was_read(cut.model_copy(update={"truncated": False})) == []


def test_the_published_schema_describes_long_dialogue(server):
    spec = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["LongDialogueInfo"]["properties"]) == {"windows", "rounds", "window_tokens", "generations",
                                                             "generated_tokens"}
    assert schemas["Summary"]["properties"]["long_dialogue"]["nullable"] is True  # BentoML's copy lost the null
    for route, model in (("/summarize", "Summary"), ("/summarize_batch", "SummaryBatch")):
        answer = spec["paths"][route]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer == {"$ref": f"#/components/schemas/{model}"}
