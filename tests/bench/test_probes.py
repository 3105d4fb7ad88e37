"""Health probes timed under load: the poller against a real HTTP server, its phases, and the short mode
(python -m bench.probes) against a real service on the tiny BART."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


class _Handler(BaseHTTPRequestHandler):
    """/livez answers at once; /readyz after 1.5 s (past the kubelet's 1 s timeout); /gone answers 503."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/readyz":
            time.sleep(1.5)
        status = 503 if self.path == "/gone" else 200
        self.send_response(status)
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(b"\n")

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def slow_readiness_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_slow_probe_fails_on_the_timeout_without_delaying_the_other_paths(slow_readiness_server):
    from bench.probe_poller import ProbePoller, probe_stats

    with ProbePoller(slow_readiness_server, ["/readyz", "/livez", "/gone"], interval_s=0.2) as poller:
        time.sleep(2.2)
    records = poller.stop()
    by_path = {path: [r for r in records if r["path"] == path] for path in ("/readyz", "/livez", "/gone")}
    readyz, livez, gone = (probe_stats(by_path[p]) for p in ("/readyz", "/livez", "/gone"))
    # /readyz never answers within its 1 s timeout: every probe fails as a timeout, and it skips the ticks it missed
    assert readyz["failures"] == readyz["probes"] >= 2 and readyz["failures_by_kind"] == {"timeout": readyz["probes"]}
    assert readyz["probes"] <= 3
    # /livez has a thread of its own: probed every 0.2 s meanwhile, all fine
    assert livez["probes"] >= 8 and livez["failures"] == 0 and livez["max_ms"] < 1000
    assert gone["failures_by_kind"] == {"HTTP 503": gone["probes"]}


def test_probes_are_put_in_the_phase_of_the_load_they_were_sent_in():
    from bench.loadtest_report import phase_bounds
    from bench.probe_poller import probes_by_phase

    config = {"ramp_s": 10.0, "hold_s": 5.0, "overload_s": 5.0, "overload_users": 8}
    started = 1000.0
    records = [{"path": "/readyz", "t": started + offset, "status": 200, "latency_s": 0.01 * (i + 1)}
               for i, offset in enumerate([-3, -1, 0, 9.9, 10, 14, 15, 19.9, 25])]
    records.append({"path": "/livez", "t": started + 16, "status": 200, "latency_s": 1.2})  # slower than 1 s
    by_phase = probes_by_phase(records, started, phase_bounds(config))
    assert list(by_phase) == ["idle", "ramp", "hold", "overload", "after"]
    assert [by_phase[p]["/readyz"]["probes"] for p in by_phase] == [2, 2, 2, 2, 1]
    assert by_phase["hold"]["/readyz"]["max_ms"] == pytest.approx(60.0)
    assert by_phase["overload"]["/livez"]["failures_by_kind"] == {"slower than 1 s": 1}
    assert phase_bounds({**config, "overload_users": 0})["overload"] == (15.0, 15.0)  # no overload phase


def test_short_mode_probes_at_rest_and_past_the_admission_limit(tiny_model, bentoml_home, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.probes", "--model", tiny_model, "--admission-limit", "2",
           "--seconds", "4", "--idle-s", "2", "--env", "SUMMARIZER_ONNX_THREADS=1",
           "--env", "SUMMARIZER_API_WORKERS=1", "--out", str(out)]
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "probes-latest.json").read_text())
    assert data["admission_limit"] == 2 and data["users"] == 4
    for phase in ("idle", "overload"):
        for path in ("/readyz", "/livez", "/model"):
            stats = data["probes"][phase][path]
            assert stats["probes"] >= 2 and stats["p99_ms"] is not None, (phase, path, stats)
    # the load did go past the admission limit while the probes ran
    assert data["load"]["outcomes"].get("503_overloaded", 0) > 0, data["load"]
    assert set(data["targets"]) == {"/readyz", "/livez"}
    assert data["targets"]["/readyz"]["p99_ms"] == data["probes"]["overload"]["/readyz"]["p99_ms"]
    assert "target /readyz p99 <= 100 ms" in proc.stdout and "/model" in proc.stdout
