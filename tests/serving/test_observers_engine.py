"""A failing observer around a real engine (the tiny BART on PyTorch, CPU): the summaries come back unchanged.

Apart from test_observers.py because it builds a model (a few seconds).
"""

from __future__ import annotations

import logging

from serving.observers import EngineObserver
from serving.protocol import GenerationSettings

SETTINGS = GenerationSettings(num_beams=2, max_new_tokens=8, min_new_tokens=0, length_penalty=1.0,
                              no_repeat_ngram_size=3)


class Failing(EngineObserver):
    def generation_started(self, call):
        raise RuntimeError("exporter down")

    def generation_finished(self, token, call, output_tokens, error):
        raise RuntimeError("exporter down")


def test_a_failing_observer_does_not_fail_an_engines_generate(tiny_model_dir, caplog):
    from serving.engines import TorchEngine

    observed = TorchEngine(tiny_model_dir, "tiny:1", device="cpu", threads=1, observer=Failing())
    plain = TorchEngine(tiny_model_dir, "tiny:1", device="cpu", threads=1)
    texts = ["A: hi\nB: hello", "Tom: lunch at noon?\nAnna: fine, see you"]
    with caplog.at_level(logging.ERROR, logger="serving.observers"):
        results = observed.summarize(texts, SETTINGS)
    assert [r.summary for r in results] == [r.summary for r in plain.summarize(texts, SETTINGS)]
    assert all(r.output_tokens > 0 for r in results)
    logged = [r.getMessage() for r in caplog.records if r.name == "serving.observers"]
    assert sorted(logged) == [
        "observer Failing.generation_finished failed; the batch goes on (logged once)",
        "observer Failing.generation_started failed; the batch goes on (logged once)"]
