"""/readyz of a real ``bentoml serve`` while a backend no request is routed to is down.

On this CPU machine ONNX Runtime is the only routed backend; the PyTorch backend runs but takes no requests.
BentoML's own runner probe (off in service.py) made /readyz also GET every dependency's /readyz: with the
PyTorch worker dead, each probe waited for it (BentoML holds its socket while it restarts) past the kubelet's
1 s timeout, so the pod turned unready although it could serve every request.
"""

from __future__ import annotations

import os
import signal
import time

import httpx

from harness import bentoml_serve

DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!"
KUBELET_TIMEOUT_S = 1.0  # a probe not answered within this fails, as Kubernetes counts it


def worker(served, service_name: str):
    """The worker process of one service (BentoML starts one per service here)."""
    found = [p for p in served.descendants() if f"--service-name {service_name}" in " ".join(p.cmdline())]
    assert len(found) == 1, [" ".join(p.cmdline()) for p in served.descendants()]
    return found[0]


def probe(url: str) -> int | str:
    """/readyz as the kubelet asks it: the status, or 'timeout' past its 1 s timeout."""
    try:
        return httpx.get(url + "/readyz", timeout=KUBELET_TIMEOUT_S).status_code
    except httpx.TimeoutException:
        return "timeout"


def test_a_dead_backend_that_takes_no_requests_leaves_the_service_ready(tiny_model, serve_env, tmp_path):
    with bentoml_serve(tmp_path / "serve.log", serve_env(tiny_model)) as served:
        os.kill(worker(served, "summarizer_torch").pid, signal.SIGKILL)
        answers = []
        for _ in range(20):  # 4 s: the restart of the PyTorch worker, two refreshes of the backends' state
            answers.append(probe(served.url))
            time.sleep(0.2)
        assert set(answers) == {200}, answers
        summary = httpx.post(served.url + "/summarize", json={"dialogue": DIALOGUE}, timeout=60)
        assert summary.status_code == 200, summary.text
