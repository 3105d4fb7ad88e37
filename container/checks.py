"""``python -m container test``: the image run offline, as the cpu overlay's pod runs it, and checked.

    the image          its size; no PyTorch, transformers or optimum inside, nor PyTorch weights (each weight
                       once: the ONNX graph's); model files readable by any user; no build secret in any layer
    start              from ``podman run`` to /readyz 200, with no network (the model is inside the image)
    same summary       a fixed dialogue's summary equals the local service's (harness.bentoml_serve, same
                       model and settings)
    bad input          answered 400 with what is wrong
    web page           GET / leads to /ui/, whose page and files are in the image
    SIGTERM            ``podman stop`` while requests are in flight: every one is answered 200, the container
                       exits 0 within the pod's termination grace period

Each check prints one line; the exit status is 1 when any failed. The figures go to report.json.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from client import AsyncSummarizerClient, ClientError
from container import podman
from container.layers import find_secrets
from container.pod import Pod, cpu_pod
from container.server import ContainerServer
from harness import bentoml_serve

# The README's example: its summary is the one the README shows.
DIALOGUE = ("Amanda: I baked cookies. Do you want some?\nJerry: Sure!\n"
            "Amanda: I will bring you some tomorrow :-)")
NOT_IN_THE_IMAGE = ("torch", "transformers", "optimum")
# SIGTERM check: enough requests, each long enough (at least 64 new tokens, 4 beams), that the signal
# arrives while most of them are in flight. Not all: adaptive batching may run the first to arrive alone
# and answer it (some 80 ms) before the last has arrived, so "all 16 at once" is a race, not a property.
# The signal is sent once every request has arrived (in flight or answered) and at least half are in flight.
DRAIN_REQUESTS = 16
DRAIN_MIN_IN_FLIGHT = DRAIN_REQUESTS // 2
DRAIN_GENERATION = {"min_new_tokens": 64, "max_new_tokens": 72}
IN_FLIGHT_METRIC = "bentoml_service_request_in_progress"


class CheckFailed(AssertionError):
    pass


@dataclass
class Report:
    image: str
    figures: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def run(self, name: str, check: Callable[[], str]) -> None:
        try:
            line = check()
        except (CheckFailed, ClientError, httpx.HTTPError, OSError, RuntimeError) as exc:
            self.failures.append(f"{name}: {exc}")
            print(f"FAIL {name}: {exc}", flush=True)
        else:
            print(f"ok   {name}: {line}", flush=True)


# Run in the image as a user it does not know (a cluster may assign any UID): which of NOT_IN_THE_IMAGE import,
# which PyTorch weights the Bento's models still carry, which model files that user cannot read.
IMAGE_PROBE = """
import glob, importlib.util, json, os
models = os.path.join(os.environ["BENTO_PATH"], "models")
files = [p for p in glob.glob(models + "/**", recursive=True) if os.path.isfile(p)]
print(json.dumps({"modules": [m for m in %r if importlib.util.find_spec(m)],
                  "torch_weights": [p for p in files if p.endswith((".safetensors", ".bin"))],
                  "unreadable": [p for p in files if not os.access(p, os.R_OK)],
                  "model_mb": round(sum(os.path.getsize(p) for p in files) / 1e6)}))
"""
ARBITRARY_USER = "4242:0"


def check_image(report: Report, secret_files: Sequence[Path]) -> str:
    inspected = podman.image_inspect(report.image)
    report.figures["image_size_mb"] = round(inspected["Size"] / 1e6)
    found = json.loads(podman.podman("run", "--rm", "--network", "none", *podman.RUN_LIMITS, "--user",
                                     ARBITRARY_USER, "--entrypoint", "python", report.image, "-c",
                                     IMAGE_PROBE % (NOT_IN_THE_IMAGE,)))
    report.figures["model_files_mb"] = found["model_mb"]
    if found["modules"]:
        raise CheckFailed(f"the CPU image contains {', '.join(found['modules'])} (requirements-cpu.lock.txt must not)")
    if found["torch_weights"]:
        raise CheckFailed(f"the CPU image carries PyTorch weights it never reads: {', '.join(found['torch_weights'])}")
    if found["unreadable"]:
        raise CheckFailed(f"user {ARBITRARY_USER} cannot read {', '.join(found['unreadable'][:3])}")
    leaks = find_secrets(report.image, secret_files)
    if leaks:
        raise CheckFailed("build secrets in the image: " + "; ".join(map(str, leaks)))
    layers = len(inspected.get("RootFS", {}).get("Layers", []))
    secrets = f"none of {', '.join(map(str, secret_files))} in its {layers} layers" if secret_files else \
        f"nothing under /run/secrets in its {layers} layers (no build secret given)"
    return (f"{report.figures['image_size_mb']} MB uncompressed (model files {found['model_mb']} MB, no PyTorch "
            f"weights, readable by user {ARBITRARY_USER}); no {', '.join(NOT_IN_THE_IMAGE)}; {secrets}")


def check_start(report: Report, server: ContainerServer) -> str:
    server.start()
    report.figures["run_to_ready_s"] = round(server.ready_after_s, 2)
    network = "no network" if server.network == "none" else "the host's network"
    return (f"/readyz 200 after {server.ready_after_s:.1f} s from `podman run` ({network}; read-only root, "
            f"user, volumes and limits of deploy/overlays/cpu)")


def summarize(url: str, dialogue: str, generation: dict | None = None) -> dict:
    response = httpx.post(url + "/summarize", json={"dialogue": dialogue, **({"generation": generation}
                                                                              if generation else {})}, timeout=120)
    if response.status_code != 200:
        raise CheckFailed(f"{url}/summarize answered {response.status_code}: {response.text[:300]}")
    return response.json()


def check_same_summary(report: Report, server: ContainerServer, log_dir: Path) -> str:
    served = summarize(server.url, DIALOGUE)
    # The local service: the same model (the Bento's, from the local store) and the pod's SUMMARIZER_*.
    settings = {k: v for k, v in server.pod.env.items() if k.startswith("SUMMARIZER_")}
    local = bentoml_serve(log_dir / "local-service.log", {**settings, "SUMMARIZER_MODEL": served["model"]})
    with local:
        expected = summarize(local.url, DIALOGUE)
    report.figures["summary"] = served["summary"]
    mismatched = [k for k in ("summary", "model", "backend", "output_tokens") if served[k] != expected[k]]
    if mismatched:
        raise CheckFailed("the image and the local service differ in " + ", ".join(
            f"{k}: {served[k]!r} vs {expected[k]!r}" for k in mismatched))
    return f"{served['summary']!r} ({served['model']}, {served['backend']}), identical to the local service's"


def check_bad_input(server: ContainerServer) -> str:
    answers = {"an empty dialogue": httpx.post(server.url + "/summarize", json={"dialogue": "  "}, timeout=30),
               "invalid JSON": httpx.post(server.url + "/summarize", content=b"{not json",
                                          headers={"content-type": "application/json"}, timeout=30)}
    wrong = {what: (r.status_code, r.text[:200]) for what, r in answers.items() if r.status_code != 400}
    if wrong:
        raise CheckFailed(f"expected 400, got {wrong}")
    return "400 for " + " and ".join(answers) + f" ({answers['an empty dialogue'].text[:90]!r})"


def check_web_page(server: ContainerServer) -> str:
    root = httpx.get(server.url + "/", timeout=30)
    if root.status_code != 307 or root.headers.get("location") != "/ui/":
        raise CheckFailed(f"GET / answered {root.status_code} (location {root.headers.get('location')!r}), "
                          "expected 307 to /ui/")
    files = {name: httpx.get(f"{server.url}/ui/{name}", timeout=30) for name in ("", "app.js", "style.css")}
    wrong = {name or "index": r.status_code for name, r in files.items() if r.status_code != 200}
    if wrong or "<title>Dialogue summarizer</title>" not in files[""].text:
        raise CheckFailed(f"the web page's files are not served: {wrong or 'no page title'}")
    return f"GET / -> /ui/, its {len(files)} files served ({sum(len(r.content) for r in files.values())} bytes)"


def in_flight(metrics_text: str) -> float:
    """Requests the public service holds on its summarize routes (BentoML's gauge)."""
    return sum(sample.value for family in text_string_to_metric_families(metrics_text)
               if family.name == IN_FLIGHT_METRIC for sample in family.samples
               if sample.labels.get("runner_name") == "dialogue_summarizer"
               and sample.labels.get("endpoint") == "/summarize")


async def _drain(server: ContainerServer) -> tuple[list, int, float, float]:
    async with AsyncSummarizerClient(server.url, timeout_s=300) as client:
        requests = [asyncio.create_task(client.summarize(f"{DIALOGUE}\nJerry: Thanks! ({i})", DRAIN_GENERATION))
                    for i in range(DRAIN_REQUESTS)]
        deadline, held, most = time.monotonic() + 60, 0.0, 0.0
        while time.monotonic() < deadline:
            # answered first, then the gauge: an answered request has left the gauge before its answer
            # arrives, so answered + held never counts one twice, and reaching 16 means all have arrived
            answered = sum(task.done() for task in requests)
            held = in_flight(await client.metrics_text())
            most = max(most, held)
            if answered + held >= DRAIN_REQUESTS and held >= DRAIN_MIN_IN_FLIGHT:
                break
            await asyncio.sleep(0.05)
        else:
            raise CheckFailed(f"at most {most:g} of {DRAIN_REQUESTS} requests were in flight at once (needs "
                              f"{DRAIN_MIN_IN_FLIGHT} once all have arrived)")
        code, seconds = await asyncio.to_thread(server.terminate)
        answers = await asyncio.gather(*requests, return_exceptions=True)
    return answers, code, seconds, held


def check_sigterm(report: Report, server: ContainerServer) -> str:
    answers, code, seconds, held = asyncio.run(_drain(server))
    failed = [repr(a) for a in answers if isinstance(a, BaseException)]
    report.figures["sigterm_to_exit_s"] = round(seconds, 2)
    report.figures["in_flight_at_sigterm"] = held
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(answers)} requests in flight at SIGTERM failed: {failed[:3]}")
    if code != 0:
        raise CheckFailed(f"all {len(answers)} requests answered, but the container exited with {code}")
    before = f" (the other {len(answers) - held:g} answered before it)" if held < len(answers) else ""
    return (f"`podman stop` with {held:g} of {len(answers)} requests in flight{before}: all {len(answers)} "
            f"answered 200, the container exited 0 after {seconds:.1f} s (grace period "
            f"{server.pod.termination_grace_s} s)")


def run_checks(image: str, log_dir: Path, secret_files: Sequence[Path] = (), pod: Pod | None = None,
               network: str = "none") -> Report:
    """Every check, in order; a failed start skips the checks that need the running container."""
    report = Report(image)
    log_dir.mkdir(parents=True, exist_ok=True)
    if not podman.image_exists(image):
        report.failures.append(f"no image {image}: build it with `make container`")
        print(f"FAIL {report.failures[-1]}")
        return report
    report.run("image", lambda: check_image(report, secret_files))
    server = ContainerServer(image, pod or cpu_pod(), log_dir / "container.log", network)
    try:
        report.run("start", lambda: check_start(report, server))
        if server.process.running() and server.ready_after_s is not None:
            report.run("same summary", lambda: check_same_summary(report, server, log_dir))
            report.run("bad input", lambda: check_bad_input(server))
            report.run("web page", lambda: check_web_page(server))
            report.run("SIGTERM", lambda: check_sigterm(report, server))
    finally:
        server.close()
    (log_dir / "report.json").write_text(json.dumps({"image": image, **report.figures,
                                                     "failures": report.failures}, indent=2) + "\n")
    return report
