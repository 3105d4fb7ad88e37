"""Privacy: no dialogue or summary text, and no API key, in anything a run writes, unless content capture is on.

Two real ``bentoml serve`` runs of the tiny BART, each with API keys on, a primary backend that fails every
batch (SUMMARIZER_INJECT_FAULT: the error path is logged, the fallback answers) and OTLP traces and metrics
to a real collector (rotel), every request header recorded on server spans (an operator's
OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=".*"). Both get the same requests with a canary
string in the dialogues: valid ones, invalid ones of every kind, a wrong API key. Then everything the run
wrote is searched: the service's stdout and stderr, its temporary directory, the BentoML home (the model
files aside), the collector's log and every export request it received.

- content capture off: the canary, the summaries and the keys are nowhere;
- content capture on (the control): the canary is in the telemetry, so the search can find what it looks
  for; the keys are still nowhere.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from harness import ManagedProcess, bentoml_serve
from observability.collector import Collector
from observability.names import API_KEY_ID, CAPTURE_CONTENT_ENV
from serving.auth import key_id
from tests.observability.otel_checks import otel_env

MAX_CHARS = 2000
API_KEY = "privacy-key-" + uuid.uuid4().hex
WRONG_KEY = "wrong-key-" + uuid.uuid4().hex


def canary() -> str:
    return "Zorblat" + uuid.uuid4().hex


@dataclass
class Run:
    name: str
    workdir: Path
    collector: Collector
    server: ManagedProcess
    canary: str = field(default_factory=canary)
    summaries: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)


def requests_with(text: str) -> dict[str, tuple[str, bytes | dict]]:
    """name -> (route, JSON body or raw bytes): each puts ``text`` where a careless log would show it."""
    dialogue = f"Anna: Did {text} call you?\nTom: Yes, {text} called this morning."
    return {
        "summarize": ("/summarize", {"dialogue": dialogue, "generation": {"max_new_tokens": 8}}),
        "summarize_batch": ("/summarize_batch", {"dialogues": [dialogue, f"Ben: {text}?\nEva: Sure."],
                                                 "generation": {"max_new_tokens": 8}}),
        "unknown field": ("/summarize", {"dialogue": dialogue, "speaker": text}),
        "too long": ("/summarize", {"dialogue": dialogue + " " + "word " * MAX_CHARS}),
        "too long in a list": ("/summarize_batch", {"dialogues": [dialogue, dialogue + "x" * MAX_CHARS]}),
        "wrong item type": ("/summarize_batch", {"dialogues": [dialogue, 5]}),
        "wrong setting type": ("/summarize", {"dialogue": dialogue, "generation": {"num_beams": text}}),
        "unknown setting": ("/summarize", {"dialogue": dialogue, "generation": {text: 1}}),
        "dialogue not a string": ("/summarize", {"dialogue": {"text": dialogue}}),
        "invalid JSON": ("/summarize", b'{"dialogue": "' + dialogue.encode() + b'", '),
        "invalid UTF-8": ("/summarize", b'{"dialogue": "' + dialogue.encode() + b'\xff\xfe"}'),
    }


def start_run(name: str, capture: bool, model: str, serve_env, workdir: Path) -> Run:
    workdir.mkdir(parents=True)
    (workdir / "tmp").mkdir()
    collector = Collector(workdir / "collector.log").start()
    env = serve_env(model, SUMMARIZER_PRIMARY="torch", SUMMARIZER_FALLBACK="onnx",
                    SUMMARIZER_INJECT_FAULT="torch:error", SUMMARIZER_MAX_DIALOGUE_CHARS=str(MAX_CHARS),
                    SUMMARIZER_API_KEYS=API_KEY, TMPDIR=str(workdir / "tmp"),
                    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=".*",
                    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE=".*",
                    **{CAPTURE_CONTENT_ENV: "true" if capture else "false"},
                    **otel_env(collector, "http/protobuf", "grpc"))
    return Run(name, workdir, collector, bentoml_serve(workdir / "serve.log", env))


def exercise(run: Run) -> None:
    """Send every request of ``requests_with(run.canary)``, and one with a wrong key; stop the service
    (it exports what it holds as it exits) and then the collector."""
    try:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=run.server.url, timeout=120) as http:
            for label, (route, body) in requests_with(run.canary).items():
                if isinstance(body, bytes):
                    answer = http.post(route, content=body, headers={**auth, "Content-Type": "application/json"})
                else:
                    answer = http.post(route, json=body, headers=auth)
                run.statuses[label] = answer.status_code
                if answer.status_code == 200:
                    found = answer.json()
                    run.summaries += [s["summary"] for s in found.get("summaries", [found])]
            wrong = http.post("/summarize", json={"dialogue": run.canary},
                              headers={"Authorization": f"Bearer {WRONG_KEY}"})
            run.statuses["wrong key"] = wrong.status_code
    finally:
        run.server.stop()
        run.collector.stop()


def everything_written(run: Run, bentoml_home: Path) -> dict[str, bytes]:
    """Where -> bytes: the serve log, the collector's logs and received export bodies, the run's files and
    the BentoML home's (its model store aside: model weights and tokenizer files, large and not written
    by a run)."""
    found = {f"collector export {n}": body for n, body in enumerate(run.collector.sink.raw())}
    roots = [run.workdir, bentoml_home]
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and "models" not in path.relative_to(root).parts[:1]:
                found[str(path)] = path.read_bytes()
    return found


def where(needle: str, written: dict[str, bytes]) -> list[str]:
    raw = needle.encode()
    return [name for name, content in written.items() if raw in content]


@pytest.fixture(scope="module")
def runs(tiny_model, serve_env, tmp_path_factory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("privacy")
    started = {name: start_run(name, capture, tiny_model, serve_env, base / name)
               for name, capture in (("capture off", False), ("capture on", True))}
    try:
        with ThreadPoolExecutor(len(started)) as pool:  # a start mostly waits: two take little longer than one
            for future in [pool.submit(run.server.start) for run in started.values()]:
                future.result()
        with ThreadPoolExecutor(len(started)) as pool:
            for future in [pool.submit(exercise, run) for run in started.values()]:
                future.result()
    finally:
        for run in started.values():
            run.server.stop()
            run.collector.stop()
    return started


def test_the_runs_answered_and_exported(runs):
    for run in runs.values():
        assert run.statuses["summarize"] == run.statuses["summarize_batch"] == 200, run.statuses
        assert run.statuses["wrong key"] == 401
        invalid = {k: v for k, v in run.statuses.items() if k not in ("summarize", "summarize_batch", "wrong key")}
        assert all(400 <= status < 500 for status in invalid.values()), invalid
        spans = run.collector.received().spans
        assert any(s.name.startswith("text_completion") for s in spans), "no GenAI span was exported"
        assert any(s.status == "ERROR" for s in spans), "the injected backend failure left no error span"
        assert "injected fault" in run.server.log(), "the backend failure was not logged"
        # Request headers were recorded (the run asked for all of them), the key's redacted.
        recorded = [s.attributes["http.request.header.authorization"] for s in spans
                    if "http.request.header.authorization" in s.attributes]
        assert recorded and all(value == ["[REDACTED]"] for value in recorded), recorded
        # ... and the request is attributed to the key by its id (a hash prefix) on the server span.
        assert any(s.attributes.get(API_KEY_ID) == key_id(API_KEY) for s in spans if s.kind == "SERVER")


def test_no_dialogue_summary_or_key_anywhere_without_content_capture(runs, bentoml_home):
    run = runs["capture off"]
    written = everything_written(run, bentoml_home)
    assert len(written) > 3 and f"{run.workdir}/serve.log" in written
    assert where(run.canary, written) == [], "dialogue text leaked"
    summaries = [s for s in run.summaries if len(s.strip()) >= 16]  # long enough not to occur by chance
    assert summaries, f"no summary long enough to search for: {run.summaries}"
    for summary in summaries:
        assert where(summary, written) == [], f"summary {summary!r} leaked"
    assert where(API_KEY, written) == [] and where(WRONG_KEY, written) == [], "an API key leaked"


def test_with_content_capture_the_search_finds_the_canary_and_still_no_key(runs, bentoml_home):
    run = runs["capture on"]
    written = everything_written(run, bentoml_home)
    leaked = where(run.canary, written)
    assert any(name.startswith("collector export") for name in leaked), "the control found nothing: the search " \
        "cannot be trusted"
    assert not [name for name in leaked if not name.startswith("collector export")], \
        f"dialogue text outside the telemetry that content capture allows: {leaked}"
    assert where(API_KEY, written) == [] and where(WRONG_KEY, written) == [], "an API key leaked"
    assert os.environ.get(CAPTURE_CONTENT_ENV, "") in ("", "false")  # the switch was the run's, not ours
