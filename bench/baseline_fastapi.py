"""Benchmark baseline only, not a product path: what teams write instead of a serving stack.

A FastAPI app around a Hugging Face ``pipeline("summarization")`` (PyTorch), answering one request at a
time, the way the tutorials do it:

    summarizer = pipeline("summarization", model=...)

    @app.post("/summarize")
    def summarize(req):
        return {"summary": summarizer(req.dialogue, ...)[0]["summary_text"]}

The benchmark starts it with ``uvicorn bench.baseline_fastapi:app`` and sets it up through the environment:

    BASELINE_MODEL_DIR    Hugging Face model directory (the stored model's hf/ files)
    BASELINE_GENERATION   JSON of generate() settings, the same as the service's (beams, lengths, ...)
    BASELINE_THREADS      torch threads; 0 = PyTorch's default (all cores), as a team would leave it
    BASELINE_MODE         'serial' (default): one pipeline call at a time (a lock, as with one model
                          object); 'threaded': FastAPI's thread pool runs calls concurrently, no lock
"""

from __future__ import annotations

import json
import os
import threading

from fastapi import FastAPI
from pydantic import BaseModel

MODEL_DIR = os.environ.get("BASELINE_MODEL_DIR", "")
GENERATION = json.loads(os.environ.get("BASELINE_GENERATION") or "{}")
THREADS = int(os.environ.get("BASELINE_THREADS") or 0)
SERIAL = (os.environ.get("BASELINE_MODE") or "serial") == "serial"

app = FastAPI(title="summarization pipeline (benchmark baseline)")
_lock = threading.Lock()
_summarizer = None


def _pipeline():
    global _summarizer
    if _summarizer is None:
        import torch
        from transformers import pipeline

        if THREADS:
            torch.set_num_threads(THREADS)
        if not MODEL_DIR:
            raise RuntimeError("set BASELINE_MODEL_DIR to a Hugging Face model directory")
        _summarizer = pipeline("summarization", model=MODEL_DIR, tokenizer=MODEL_DIR, device=-1)
    return _summarizer


@app.on_event("startup")
def _load() -> None:
    _pipeline()


class SummarizeRequest(BaseModel):
    dialogue: str


@app.get("/healthz")
def healthz() -> dict:
    return {"ok": _summarizer is not None}


@app.post("/summarize")
def summarize(req: SummarizeRequest) -> dict:
    summarizer = _pipeline()
    if SERIAL:
        with _lock:
            out = summarizer(req.dialogue, truncation=True, **GENERATION)
    else:
        out = summarizer(req.dialogue, truncation=True, **GENERATION)
    return {"summary": out[0]["summary_text"]}
