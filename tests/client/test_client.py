"""The typed client against a real ``bentoml serve`` of the tiny BART: models back, settings through, 400s readable."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from client import (AsyncSummarizerClient, GenerationOptions, ServiceError, Summary, SummaryBatch,
                    SummarizerClient)
from harness import bentoml_serve
from serving.errors import ErrorCode
from serving.protocol import EngineName

REPO_ROOT = Path(__file__).resolve().parents[2]
# The tiny model's default summary of this runs to the model's max_new_tokens (24): long enough to cut.
DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"
SHORT = "Tom: Lunch at 12?\nAnna: OK"


@pytest.fixture(scope="module")
def server(tiny_model, serve_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("client") / "serve.log"
    with bentoml_serve(log, serve_env(tiny_model)) as served:
        yield served


@pytest.fixture
def summarizer(server):
    with SummarizerClient(server.url) as client:
        yield client


def test_summarize_returns_a_summary(summarizer, tiny_model):
    result = summarizer.summarize(DIALOGUE)
    assert isinstance(result, Summary)
    assert result.summary and result.model == tiny_model
    assert result.backend is EngineName.ONNX_CPU  # no GPU in the tests: ONNX Runtime serves
    assert result.input_tokens > 10 and result.output_tokens > 0 and not result.fallback


def test_summarize_batch_returns_one_summary_per_dialogue_in_order(summarizer):
    batch = summarizer.summarize_batch([DIALOGUE, SHORT, DIALOGUE])
    assert isinstance(batch, SummaryBatch)
    assert [s.input_tokens for s in batch.summaries] == [batch.summaries[0].input_tokens,
                                                         summarizer.summarize(SHORT).input_tokens,
                                                         batch.summaries[0].input_tokens]
    assert batch.summaries[0].summary == batch.summaries[2].summary
    assert batch.duration_ms > 0


def test_generation_settings_reach_the_service(summarizer):
    default = summarizer.summarize(DIALOGUE)
    assert default.output_tokens > 6, "the tiny model's default summary must be longer than the cut below"
    as_dict = summarizer.summarize(DIALOGUE, {"max_new_tokens": 6})
    as_model = summarizer.summarize_batch([DIALOGUE], GenerationOptions(max_new_tokens=6, num_beams=1)).summaries[0]
    # max_new_tokens counts BART's start tokens too, so the summary itself has a few less.
    assert 0 < as_dict.output_tokens <= 6 and 0 < as_model.output_tokens <= 6


def test_model_ready_and_metrics(summarizer, tiny_model):
    info = summarizer.model()
    assert info["model"] == tiny_model and info["generation_defaults"]["max_new_tokens"] > 0
    assert summarizer.ready() is True
    assert "bentoml_service_request_total" in summarizer.metrics_text()


def test_async_client_runs_many_requests_on_one_pool(server):
    async def run() -> tuple[list[Summary], SummaryBatch, bool]:
        async with AsyncSummarizerClient(server.url, max_connections=8) as client:
            many = await asyncio.gather(*(client.summarize(f"A: note {i}\nB: got it, {i}.") for i in range(24)))
            batch = await client.summarize_batch([DIALOGUE, SHORT], generation={"max_new_tokens": 6})
            return list(many), batch, await client.ready()

    many, batch, ready = asyncio.run(run())
    assert len(many) == 24 and all(isinstance(s, Summary) and s.summary for s in many)
    assert isinstance(batch, SummaryBatch) and len(batch.summaries) == 2
    assert all(s.output_tokens <= 6 for s in batch.summaries)
    assert ready is True


@pytest.mark.parametrize(("send", "names", "field"), [
    (lambda c: c.summarize("   "), "dialogue is empty", "dialogue"),
    (lambda c: c.summarize_batch(["A: hi", 5]), "dialogues[1]: input should be a valid string", "dialogues[1]"),
    (lambda c: c.summarize_batch([]), "dialogues is an empty list", "dialogues"),
], ids=["blank dialogue", "wrong type in a list", "empty list"])
def test_a_400_raises_service_error_with_the_services_message(summarizer, send, names, field):
    with pytest.raises(ServiceError) as refused:
        send(summarizer)
    error = refused.value
    assert error.status == 400 and names in error.message
    assert error.code == ErrorCode.INVALID_REQUEST and error.field == field and error.retry_after_s is None
    assert "\n" not in str(error) and summarizer.url in str(error)


def test_a_bad_generation_setting_fails_in_the_client(server):
    # Pointed at a closed port: the pydantic error proves the request was never sent.
    with SummarizerClient("http://127.0.0.1:1") as client, pytest.raises(ValidationError, match="num_beams"):
        client.summarize(DIALOGUE, {"num_beams": 99})
    with SummarizerClient(server.url) as client, pytest.raises(ValidationError, match="min_new_tokens"):
        client.summarize(DIALOGUE, {"min_new_tokens": -1})


def test_cli_summarizes_files(server, tmp_path):
    (tmp_path / "one.txt").write_text(DIALOGUE)
    (tmp_path / "many.jsonl").write_text("\n".join(json.dumps({"id": f"d{i}", "dialogue": f"A: hi {i}\nB: yo"})
                                                   for i in range(3)))
    out = subprocess.run([sys.executable, "-m", "client", str(tmp_path / "one.txt"), str(tmp_path / "many.jsonl"),
                          "--url", server.url, "--json", "--batch", "2", "--max-new-tokens", "6"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    rows = [json.loads(line) for line in out]
    assert [r["name"] for r in rows] == ["one.txt", "many.jsonl:d0", "many.jsonl:d1", "many.jsonl:d2"]
    assert all(r["summary"] and 0 < r["output_tokens"] <= 6 for r in rows)


def test_cli_prints_a_refusal_on_one_line(server, tmp_path):
    (tmp_path / "blank.txt").write_text("  \n ")
    done = subprocess.run([sys.executable, "-m", "client", str(tmp_path / "blank.txt"), "--url", server.url],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "400" in done.stderr and "dialogue is empty" in done.stderr


def test_readme_example_runs(server):
    done = subprocess.run([sys.executable, "-m", "client.example", server.url], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused: 400 dialogue is empty" in done.stdout
    assert "12 summaries from concurrent requests" in done.stdout


def test_readme_use_it_python_runs_as_written(server):
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    use_it = readme.split("\n## Use it\n", 1)[1].split("\n## ", 1)[0]
    snippet = use_it.split("```python\n", 1)[1].split("```", 1)[0]
    assert "http://localhost:3000" in snippet, "the README's example is meant to run against a local service"
    done = subprocess.run([sys.executable, "-c", snippet.replace("http://localhost:3000", server.url)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "onnx-cpu" in done.stdout and len(done.stdout.splitlines()) == 3
