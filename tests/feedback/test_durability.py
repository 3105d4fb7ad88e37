"""Nothing accepted is lost: answers and feedback written by two API worker processes at once survive a restart
of the service and a ``kill -9`` of its whole process group right after the 200; with text retention on, the
export then makes the pairs from what the service kept.

One service configuration (the tiny BART, SUMMARIZER_API_WORKERS=2, SUMMARIZER_FEEDBACK_RETAIN_TEXT=true),
started three times on the same SQLite file: one test, in order, since each step needs the one before.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from client import AsyncSummarizerClient, SummarizerClient
from feedback.store import SQLiteStore
from harness import bentoml_serve
from harness.workers import service_workers

REPO_ROOT = Path(__file__).resolve().parents[2]
DIALOGUES = [f"Agent: Ticket {n}: how can I help?\nCustomer: My order {n} did not arrive.\nAgent: I will resend it."
             for n in range(12)]


def serve(tmp_path: Path, env: dict, name: str):
    return bentoml_serve(tmp_path / f"{name}.log", env, name=f"bentoml serve ({name})")


def kill_9(server) -> None:
    """SIGKILL to the service's process group and every process it started: no shutdown code runs."""
    everyone = server.descendants()
    os.killpg(server.pid, signal.SIGKILL)
    for proc in everyone:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(everyone, timeout=30)
    server.stop()  # reaps the main process and closes the log


def test_nothing_accepted_is_lost_across_a_restart_and_a_kill_9(tiny_model, serve_env, tmp_path):
    db = tmp_path / "feedback.sqlite3"
    env = serve_env(tiny_model, SUMMARIZER_API_WORKERS="2", SUMMARIZER_FEEDBACK_PATH=str(db),
                    SUMMARIZER_FEEDBACK_RETAIN_TEXT="true")

    async def rate_all(url: str) -> list:
        async with AsyncSummarizerClient(url, max_connections=12) as client:
            summaries = await asyncio.gather(*(client.summarize(d) for d in DIALOGUES))
            receipts = await asyncio.gather(*(
                client.feedback(s.request_id, "bad", corrected_summary=f"Resend order {n}.")
                for n, s in enumerate(summaries)))
            return list(zip(summaries, receipts))

    with serve(tmp_path, env, "first") as server:
        rated = asyncio.run(rate_all(server.url))
        api_workers = service_workers(server.pid, "dialogue_summarizer")
    assert len(api_workers) == 2, "two API worker processes wrote the answers and the feedback at once"
    assert all(receipt.stored and not receipt.replaced for _, receipt in rated)

    # A graceful restart: every answer and feedback is there, and the service finds an earlier answer.
    with serve(tmp_path, env, "restarted") as server, SummarizerClient(server.url) as client:
        again = client.feedback(rated[0][0].request_id, "good", comment="after the restart")
        assert again.replaced
        killed_summary = client.summarize("Customer: The app logs me out.\nAgent: Update it to 2.1, please.")
        killed_receipt = client.feedback(killed_summary.request_id, "bad",
                                         corrected_summary="The agent asks the customer to update the app.")
        kill_9(server)  # right after the 200
    assert not server.running()

    with serve(tmp_path, env, "after kill -9") as server, SummarizerClient(server.url) as client:
        assert client.feedback(killed_summary.request_id, "bad",
                               corrected_summary="The agent asks the customer to update the app to 2.1.").replaced
    store = SQLiteStore(db)
    try:
        for n, (summary, receipt) in enumerate(rated):
            kept = store.answer(summary.request_id)
            assert kept is not None and kept.dialogue == DIALOGUES[n] and kept.summary == summary.summary
            if n:
                assert store.feedback(summary.request_id).feedback_id == receipt.feedback_id
        assert store.feedback(rated[0][0].request_id).comment == "after the restart"
        assert store.answer(killed_summary.request_id) is not None
        assert store.feedback(killed_summary.request_id).feedback_id != killed_receipt.feedback_id  # replaced after
    finally:
        store.close()

    out = tmp_path / "pairs.jsonl"
    done = subprocess.run([sys.executable, "-m", "feedback", "export", "--path", str(db), "--out", str(out),
                           "--source", "corrected"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pairs = {p["request_id"]: p for p in map(json.loads, out.read_text().splitlines())}
    # The first answer's feedback was replaced by one without a correction: 11 of them, and the killed one.
    assert len(pairs) == len(rated)
    assert pairs[killed_summary.request_id]["summary"] == "The agent asks the customer to update the app to 2.1."
    assert pairs[rated[5][0].request_id] | {"feedback_at": None} == {
        "dialogue": DIALOGUES[5], "summary": "Resend order 5.", "request_id": rated[5][0].request_id,
        "rating": "bad", "model": tiny_model, "source": "corrected", "feedback_at": None}
    assert f"exported {len(rated)} pairs" in done.stdout
