"""Where PyTorch can run, asked without importing it (the API workers only route): the same answer as
PyTorch's own, and no torch in the process that asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serving.devices import cuda_available, torch_has_cuda_build

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_asking_for_cuda_imports_no_pytorch():
    code = "import sys; from serving.devices import cuda_available; cuda_available(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_answer_is_pytorchs_own():
    import torch

    assert torch_has_cuda_build() == torch.backends.cuda.is_built()
    assert cuda_available() == torch.cuda.is_available()
