"""Fit at bart-large-cnn's size: import memory, stored size, serving memory and speed of a model with
bart-large-cnn's exact shape (406M parameters; ``model_store.tiny.build_bart_large_shaped``: random weights, the
real BART tokenizer, saved as a hub download is), since the hub cannot be reached here.

    python -m bench.large_model                     # build (once), import, serve; table + bench/results JSON
    python -m bench.large_model --skip-import       # serve the model the last run imported

What it measures, against issue 12's targets:
- import (``python -m model_store import DIR``): wall time, the peak of the whole process tree's memory
  (RSS of the importer and its children summed, sampled every 0.2 s) and the largest single process (target:
  under 8 GB);
- the stored model: every file's size and how many times the weights are kept (target: twice at most);
- serving (``bentoml serve``, the CPU configuration: ONNX Runtime primary, with the settings of
  deploy/components/bart-large-cnn): start to ready, seconds per
  summary at the model's defaults, and each worker's PSS after start and after the summaries (target: the
  ONNX worker under 1.5x the weights).
The CPU image of such a model is measured by ``make container MODEL=...`` (README, "Fit at bart-large-cnn
scale").
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil

from bench.common import REPO_ROOT, fmt, load_dialogues, log, machine_info, now_iso, publish
from bench.servers import tree_memory
from harness import ManagedProcess, bentoml_serve

NAME = "bart-large-shaped"
GB = 1e9


def build_model(workdir: Path) -> Path:
    """The bart-large-cnn-shaped model directory (built once, kept in ``workdir``)."""
    from model_store.tiny import build_bart_large_shaped

    model_dir = workdir / NAME
    if not (model_dir / "model.safetensors").exists():
        log(f"building a bart-large-cnn-shaped model in {model_dir}")
        build_bart_large_shaped(model_dir)
    return model_dir


class TreePeak:
    """The highest summed RSS of a process and its descendants, sampled in a thread while it runs."""

    def __init__(self, process: ManagedProcess, every_s: float = 0.2) -> None:
        self.process, self.every_s, self.peak_bytes, self.largest_bytes = process, every_s, 0, 0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join()

    def _sample(self) -> None:
        while self.process.running():
            sizes = []
            for proc in [psutil.Process(self.process.pid), *self.process.descendants()]:
                try:
                    sizes.append(proc.memory_info().rss)
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, sum(sizes))
            self.largest_bytes = max([self.largest_bytes, *sizes])
            time.sleep(self.every_s)


def import_model(model_dir: Path, home: Path, logs: Path) -> dict:
    argv = [sys.executable, "-m", "model_store", "import", str(model_dir), "--name", NAME]
    importer = ManagedProcess("model_store import", argv, logs / "import.log", env={"BENTOML_HOME": str(home)})
    started = time.perf_counter()
    with TreePeak(importer.start()) as peak:
        importer.proc.wait()
    seconds = time.perf_counter() - started
    code = importer.stop()
    if code != 0:
        raise RuntimeError(f"import failed ({code}):\n{importer.log_tail()}")
    return {"seconds": round(seconds, 1), "tree_peak_gb": round(peak.peak_bytes / GB, 2),
            "largest_process_gb": round(peak.largest_bytes / GB, 2)}


def stored_sizes(home: Path) -> dict:
    """Each stored file's size, and how many times the weights (the safetensors file) are kept."""
    stored = max((p for p in (home / "models" / NAME).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    files = {str(p.relative_to(stored)): p.stat().st_size for p in sorted(stored.rglob("*")) if p.is_file()}
    weights = sum(size for rel, size in files.items() if rel.endswith(".safetensors"))
    total = sum(files.values())
    return {"path": str(stored), "weights_gb": round(weights / GB, 3), "total_gb": round(total / GB, 3),
            "copies_of_weights": round(total / weights, 2),
            "files_mb": {rel: round(size / 1e6, 1) for rel, size in files.items() if size > 1e6}}


def component_settings() -> dict[str, str]:
    """The SUMMARIZER_* settings deploy/components/bart-large-cnn gives a pod (its model name aside): the
    service is measured as it would be deployed at this size."""
    import yaml

    component = yaml.safe_load((REPO_ROOT / "deploy" / "components" / "bart-large-cnn" / "kustomization.yaml")
                               .read_text())
    literals = [item for generator in component["configMapGenerator"] for item in generator.get("literals", [])]
    settings = dict(item.split("=", 1) for item in literals)
    settings.pop("SUMMARIZER_MODEL", None)
    return settings


def serve(home: Path, logs: Path, summaries: int, concurrency: int) -> dict:
    from client import AsyncSummarizerClient

    settings = component_settings()
    env = {**settings, "BENTOML_HOME": str(home), "SUMMARIZER_MODEL": f"{NAME}:latest"}
    server = bentoml_serve(logs / "serve.log", env)
    server.start(timeout_s=900)
    try:
        after_start = tree_memory(server)
        dialogues = load_dialogues(summaries)

        async def run() -> list[float]:
            gate = asyncio.Semaphore(concurrency)
            async with AsyncSummarizerClient(server.url, timeout_s=900) as client:
                async def one(text: str) -> float:
                    async with gate:
                        began = time.perf_counter()
                        await client.summarize(text)
                        return time.perf_counter() - began
                return await asyncio.gather(*(one(text) for text in dialogues))

        began = time.perf_counter()
        latencies = asyncio.run(run())
        wall = time.perf_counter() - began
        after_summaries = tree_memory(server)
    finally:
        server.stop()
    return {"settings": settings, "ready_s": round(server.ready_after_s, 1), "summaries": summaries,
            "concurrency": concurrency,
            "seconds_per_summary": round(wall / summaries, 2), "latency_max_s": round(max(latencies), 2),
            "memory_after_start": after_start, "memory_after_summaries": after_summaries}


def onnx_worker_pss_gb(memory: dict) -> float | None:
    rows = [row for row in memory.get("per_process", []) if row["cmd"].endswith("summarizer_onnx")]
    return round(rows[0]["pss_mib"] * 2**20 / GB, 2) if rows else None


def render(report: dict) -> str:
    imp, sizes, served = report.get("import"), report["stored"], report["serve"]
    weights = sizes["weights_gb"]
    lines = [f"# bart-large-cnn-shaped model ({report['machine']['cpus']} CPUs, load {report['machine']['load_average']})",
             "", "| what | measured | target |", "|---|---|---|"]
    if imp:
        lines += [f"| import: wall time | {imp['seconds']} s | - |",
                  f"| import: peak memory, whole process tree | {imp['tree_peak_gb']} GB | < 8 GB |",
                  f"| import: largest single process | {imp['largest_process_gb']} GB | - |"]
    lines += [f"| stored: weights (safetensors) | {weights} GB | - |",
              f"| stored: all files | {sizes['total_gb']} GB ({sizes['copies_of_weights']}x the weights) | <= 2x |"]
    for label, key in (("after start", "memory_after_start"), ("after the summaries", "memory_after_summaries")):
        pss = onnx_worker_pss_gb(served[key])
        ratio = f" ({pss / weights:.2f}x the weights)" if pss else ""
        lines.append(f"| serve: ONNX worker PSS {label} | {fmt(pss)} GB{ratio} | < 1.5x |")
        lines.append(f"| serve: all processes PSS {label} | {served[key]['pss_mib'] * 2**20 / GB:.2f} GB | - |")
    lines += [f"| serve: start to ready | {served['ready_s']} s | - |",
              f"| serve: seconds per summary ({served['summaries']} DialogSum dialogues, {served['concurrency']} "
              f"at a time, model defaults) | {served['seconds_per_summary']} s | - |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.large_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=str(REPO_ROOT / "runs" / "large-model"),
                        help="where the model, its BentoML home and the logs go (about 8 GB)")
    parser.add_argument("--skip-import", action="store_true", help="serve what the last run imported")
    parser.add_argument("--summaries", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", help="results directory (default bench/results)")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir).resolve()
    home, logs = workdir / "bentoml-home", workdir / "logs"
    report = {"started": now_iso(), "machine": machine_info()}
    model_dir = build_model(workdir)
    if not args.skip_import:
        shutil.rmtree(home, ignore_errors=True)
        log("importing (python -m model_store import)")
        report["import"] = import_model(model_dir, home, logs)
    report["stored"] = stored_sizes(home)
    log("serving (bentoml serve)")
    report["serve"] = serve(home, logs, args.summaries, args.concurrency)
    publish("large-model", report, args.out, render(report), logs, args.keep_logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
