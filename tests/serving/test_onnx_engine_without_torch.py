"""The ONNX engine, and the service around it, serve every generation setting in processes where PyTorch,
transformers and optimum cannot be imported (the CPU image installs none of them), with the summaries PyTorch
gives in this one."""

from __future__ import annotations

import json
import subprocess
import sys

import bentoml
import httpx

from harness import bentoml_serve
from harness.process import REPO_ROOT
from serving.engines import HF_SUBDIR, ONNX_SUBDIR, TorchEngine

BLOCKED = ("torch", "transformers", "optimum")
# Imported at interpreter start (sitecustomize), before anything else can import what it blocks.
BLOCKER = f"""
import importlib.abc
import os
import sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            if os.environ.get("BLOCKED_IMPORTS_LOG"):  # which process was refused what
                with open(os.environ["BLOCKED_IMPORTS_LOG"], "a") as log:
                    log.write(f"{{os.getpid()}} {{name}}\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not in the CPU image)")
        return None

sys.meta_path.insert(0, Blocked())
"""
SERVE = """
import json, sys
from serving.engines import OnnxEngine

hf, onnx, request = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    import torch  # noqa: F401
    blocked = False
except ImportError:
    blocked = True
engine = OnnxEngine(hf, "no-torch", threads=1, onnx_dir=onnx)
summaries = {}
for name, update in request["settings"].items():
    results = engine.summarize(request["texts"], engine.defaults.model_copy(update=update))
    summaries[name] = [[r.summary, r.output_tokens] for r in results]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in request["blocked"])
print(json.dumps({"blocked": blocked, "loaded": loaded, "summaries": summaries}))
"""
SETTINGS = {
    "defaults (4 beams, n-gram 3)": {},
    "greedy": {"num_beams": 1},
    "2 beams, n-gram 0": {"num_beams": 2, "no_repeat_ngram_size": 0},
    "n-gram 2": {"no_repeat_ngram_size": 2},
    "max 1": {"max_new_tokens": 1, "min_new_tokens": 0},
    "max 2": {"max_new_tokens": 2, "min_new_tokens": 0},
    "min = max = 7": {"max_new_tokens": 7, "min_new_tokens": 7},
    "length penalty 2": {"length_penalty": 2.0},
}
TEXTS = ["Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)",
         "Tom: Are we still meeting at six?\nAnna: Yes, at the cafe next to the station.\nTom: Great, see you."]


def pytorch_summaries(hf, tag) -> dict[str, list[list]]:
    torch_engine = TorchEngine(hf, tag, threads=1)
    return {name: [[r.summary, r.output_tokens] for r in
                   torch_engine.summarize(TEXTS, torch_engine.defaults.model_copy(update=update))]
            for name, update in SETTINGS.items()}


def test_onnx_engine_serves_every_setting_without_torch_transformers_or_optimum(tiny_model, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    stored = bentoml.models.get(tiny_model)
    hf, onnx = stored.path_of(HF_SUBDIR), stored.path_of(ONNX_SUBDIR)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{REPO_ROOT}", "HOME": str(tmp_path)}
    request = json.dumps({"texts": TEXTS, "settings": SETTINGS, "blocked": BLOCKED})
    done = subprocess.run([sys.executable, "-c", SERVE, hf, onnx, request], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["blocked"] is True and child["loaded"] == []

    expected = pytorch_summaries(hf, tiny_model)
    assert child["summaries"] == expected
    assert expected["max 1"] == expected["max 2"] == [["", 0]] * 2  # BART's forced tokens only: no summary
    assert all(n == 5 for _, n in expected["min = max = 7"])  # 7 new tokens: BART's forced first and last, 5 others


def test_the_service_serves_every_setting_without_torch_transformers_or_optimum(tiny_model, serve_env, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)  # every process of the service starts with it
    refused = tmp_path / "blocked-imports.log"
    env = serve_env(tiny_model, PYTHONPATH=f"{tmp_path}:{REPO_ROOT}", SUMMARIZER_MAX_BATCH_SIZE="1",
                    BLOCKED_IMPORTS_LOG=str(refused))
    answers = {}
    with bentoml_serve(tmp_path / "serve.log", env) as server:
        for name, update in SETTINGS.items():
            response = httpx.post(f"{server.url}/summarize_batch", json={"dialogues": TEXTS, "generation": update},
                                  timeout=120)
            assert response.status_code == 200, response.text
            summaries = response.json()["summaries"]
            assert {s["backend"] for s in summaries} == {"onnx-cpu"}
            answers[name] = [[s["summary"], s["output_tokens"]] for s in summaries]
    # the blocker ran in the service's processes: PyTorch's backend asked for CUDA there, was refused, coped
    assert "torch" in refused.read_text().split()
    stored = bentoml.models.get(tiny_model)
    assert answers == pytorch_summaries(stored.path_of(HF_SUBDIR), tiny_model)
