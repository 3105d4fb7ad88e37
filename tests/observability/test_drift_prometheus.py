"""``python -m observability.drift report --prometheus``: its PromQL against a real Prometheus (Debian's
``prometheus``) scraping the summarizer's input metrics as the OTLP translation names them (here served by a
small exporter whose buckets grow in the reference's proportions, and whose dialogues are all German)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from harness import ManagedProcess, free_port, http_ready
from observability import drift
from observability.names import (INPUT_DIALOGUES, INPUT_FRAGMENTED_WORDS, INPUT_SPEAKERS, INPUT_TOKENS,
                                 PROMETHEUS_NAMES)
from tests.observability.test_drift import SHIPPED

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian: apt-get install "
                                                           "prometheus)")


def exposition(reference: drift.Reference, scrapes: int) -> str:
    """Cumulative buckets after ``scrapes`` rounds of the reference's counts; every dialogue German."""
    lines = []
    for name, metric in (("tokens", INPUT_TOKENS), ("speakers", INPUT_SPEAKERS),
                         ("fragmented_words", INPUT_FRAGMENTED_WORDS)):
        cumulative = 0
        for le, count in zip(drift.STATISTICS[name].labels, reference.counts[name]):
            cumulative += count * scrapes
            lines.append(f'{PROMETHEUS_NAMES[metric]}_bucket{{le="{le}"}} {cumulative}')
    lines.append(f'{PROMETHEUS_NAMES[INPUT_DIALOGUES]}{{summarizer_language="de",summarizer_over_context="false"}} '
                 f"{reference.dialogues * scrapes}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def prometheus(tmp_path):
    reference = drift.Reference.load(SHIPPED)
    served = {"scrapes": 0}

    class Exporter(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served["scrapes"] += 1
            body = exposition(reference, served["scrapes"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": "summarizer", "static_configs": [{"targets": [f"127.0.0.1:{exporter.server_address[1]}"]}]}]}))
    port = free_port()
    server = ManagedProcess("prometheus", [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                           f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "prometheus.log",
                            ready=http_ready(f"http://127.0.0.1:{port}/-/ready"), port=port)
    with server:
        deadline = time.monotonic() + 30
        while served["scrapes"] < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # the last scrape stored
        yield server.url
    exporter.shutdown()


def test_report_from_prometheus(prometheus, capsys):
    assert drift.main(["report", "--prometheus", prometheus, "--window", "1m", "--selector", 'job="summarizer"',
                       "--json"]) == 0
    printed = capsys.readouterr().out
    values = json.loads(printed.strip().splitlines()[-1])
    # The histograms grew in the reference's proportions: no shift; every dialogue German: a large one.
    for statistic in ("tokens", "speakers", "fragmented_words", "over_context"):
        assert values[statistic] < 0.01, (statistic, values)
    assert values["language"] > 5
    assert "language" in printed and "significant shift" in printed
