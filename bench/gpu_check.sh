#!/usr/bin/env bash
# The GPU checks in one call, for a machine with an NVIDIA GPU (e.g. a session lent one): the service's CUDA
# path (python -m bench.gpu_service), then GPU throughput at bart-large-cnn's size (python -m bench.gpu).
#
#   bench/gpu_check.sh [OUT_DIR]        results as JSON in OUT_DIR (default: $OUT, else bench/results)
#
# Needs: a Python with requirements.txt installed, torch the CUDA build (PYTHON, default .venv/bin/python);
# the BART tokenizer and DialogSum: ../shared or ./shared (tokenizers/bart, data), or SUMMARIZER_BART_TOKENIZER
# and SUMMARIZER_DATA_DIR. Nothing is fetched: the shipped model is imported from model_store/default_model
# into BENTOML_HOME (default: a fresh one in OUT_DIR). GPU_BENCH_ARGS go to bench.gpu ("--batch-sizes 32,64").
# Exit status: the first failing step's (bench.gpu_service: 1 a check failed, 2 it could not run).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
out=${1:-${OUT:-bench/results}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export BENTOML_DO_NOT_TRACK=true BENTOML_HOME=${BENTOML_HOME:-$(mktemp -d "$out/bentoml-home.XXXX")}
if [ ! -d ../shared ] && [ -d shared ]; then   # a copy of the checkout that carries shared/ inside it
    export SUMMARIZER_DATA_DIR=${SUMMARIZER_DATA_DIR:-$PWD/shared/data}
    export SUMMARIZER_BART_TOKENIZER=${SUMMARIZER_BART_TOKENIZER:-$PWD/shared/tokenizers/bart}
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.csv"
"$PYTHON" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device (its CUDA: {torch.version.cuda})")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY
"$PYTHON" -m model_store import-default
"$PYTHON" -m bench.gpu_service --out "$out"
# shellcheck disable=SC2086  # GPU_BENCH_ARGS is a list of options
"$PYTHON" -m bench.gpu --json "$out/gpu.json" ${GPU_BENCH_ARGS:-}
