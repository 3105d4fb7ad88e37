"""Drift in a live run: a real ``bentoml serve`` of the shipped default model (its reference_stats.json
imported with it) exporting to a real collector, fed a normal stream of English corpus dialogues and then a
shifted one (long meetings made by joining dialogues, German, French and Japanese chats). The exported PSI
stays low, then rises past the alert's 0.2; each value equals the PSI computed offline for the same window;
non-English answers carry a language warning, English ones never."""

from __future__ import annotations

import httpx
import pytest

from eval.datasets import load_eval_set
from harness import bentoml_serve
from observability import drift, telemetry
from observability.collector import Collector, Received
from serving.inspection import Inspector, LanguageIdentifier
from serving.tokenization import ModelTokenizer
from tests.observability.otel_checks import otel_env
from tests.serving.test_inspection import FOREIGN, MODEL_DIR

WINDOW = 200
FAST = {"num_beams": 1, "max_new_tokens": 4}  # the statistics are about inputs: generate as little as possible


def normal_stream() -> list[str]:
    """SAMSum and DialogSum dialogues alternating: the training set's mix (either alone is a shift)."""
    samsum, dialogsum = load_eval_set("samsum_validation"), load_eval_set("dialogsum_test")
    return [e.dialogue for i in range(WINDOW // 2) for e in (samsum[i], dialogsum[i])]


def shifted_stream() -> list[str]:
    """60 meetings of 8 joined DialogSum validation dialogues (past the context) and 60 non-English chats."""
    dialogsum = [e.dialogue for e in load_eval_set("dialogsum_validation")]
    meetings = ["\n".join(dialogsum[i * 8:(i + 1) * 8]) for i in range(60)]
    foreign = [d for _ in range(10) for language in sorted(FOREIGN) for d in FOREIGN[language]]
    return [d for pair in zip(meetings, foreign) for d in pair]


@pytest.fixture(scope="module")
def live(default_model, serve_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("drift_live")
    with Collector(workdir / "collector.log") as collector:
        # Long dialogues cut to the context (truncated), not read in windows: the meetings cost one generation
        # each, and the statistics are about the inputs alone.
        env = serve_env(default_model, SUMMARIZER_DRIFT_WINDOW=str(WINDOW), SUMMARIZER_DRIFT_MIN_DIALOGUES="100",
                        SUMMARIZER_LONG_DIALOGUES="false", **otel_env(collector, "http/protobuf", "http/protobuf"))
        with bentoml_serve(workdir / "serve.log", env) as server:
            yield server, collector


def send(url: str, dialogues: list[str]) -> list[dict]:
    answers = []
    with httpx.Client(timeout=300.0) as client:
        for start in range(0, len(dialogues), 20):
            answer = client.post(f"{url}/summarize_batch", json={"dialogues": dialogues[start:start + 20],
                                                                 "generation": FAST})
            assert answer.status_code == 200, answer.text
            answers += answer.json()["summaries"]
    return answers


def exported_psi(collector: Collector, dialogues_sent: int) -> tuple[dict[str, float], Received]:
    """The PSI gauge of the export that counted every dialogue sent (none is sent meanwhile)."""
    received = collector.wait_for(lambda r: r.total(telemetry.INPUT_DIALOGUES) == dialogues_sent, timeout_s=60)
    received = collector.wait_for(lambda r: len(r.latest(telemetry.INPUT_DRIFT_PSI)) == len(drift.STATISTICS))
    return {p.attributes[telemetry.STATISTIC]: p.value for p in received.latest(telemetry.INPUT_DRIFT_PSI)}, received


def offline_psi(window: list[str]) -> dict[str, float]:
    inspector = Inspector(ModelTokenizer(MODEL_DIR), 1024, LanguageIdentifier())
    reference = drift.Reference.load(MODEL_DIR / drift.REFERENCE_FILE)
    return reference.psi(drift.bin_counts(inspector.statistics(d) for d in window))


def test_shifted_stream_moves_the_exported_psi(live):
    server, collector = live
    normal, shifted = normal_stream(), shifted_stream()

    answers = send(server.url, normal)
    assert [a["warnings"] for a in answers if a["warnings"]] == []  # no English dialogue warned about
    before, _ = exported_psi(collector, len(normal))
    assert before == pytest.approx(offline_psi(normal), abs=1e-9)
    assert max(before.values()) < drift.PSI_ALERT, before

    answers = send(server.url, shifted)
    foreign = {d for texts in FOREIGN.values() for d in texts}
    for dialogue, answer in zip(shifted, answers):
        if dialogue in foreign:
            assert [n["code"] for n in answer["warnings"]] == ["language"], answer
        else:
            assert answer["warnings"] == [] and answer["truncated"], answer
    after, received = exported_psi(collector, len(normal) + len(shifted))
    assert after == pytest.approx(offline_psi((normal + shifted)[-WINDOW:]), abs=1e-9)
    print(f"\nPSI exported after the normal stream: {before}\nand after the shifted one: {after}")
    for statistic in ("tokens", "over_context", "language"):
        assert after[statistic] > drift.PSI_ALERT and after[statistic] > 5 * before[statistic], (statistic, after)

    # The statistics themselves, with the language as a bounded label.
    by_language = {p.attributes[telemetry.LANGUAGE]: p.value for p in received.latest(telemetry.INPUT_DIALOGUES)
                   if p.attributes[telemetry.OVER_CONTEXT] == "false"}
    for language in FOREIGN:
        assert by_language[language] == 10 * len(FOREIGN[language])
    assert received.total(telemetry.INPUT_DIALOGUES, **{telemetry.OVER_CONTEXT: "true"}) == 60
    assert received.total(telemetry.INPUT_TOKENS) == len(normal) + len(shifted)
    # Sum of tokens over all dialogues: the shifted stream's meetings alone are past 60 contexts.
    assert received.histogram_sum(telemetry.INPUT_TOKENS) > 60 * 1024
