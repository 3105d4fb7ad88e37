# Commands of the project; the virtual environment lives in .venv.
#   make serve   set up, import the shipped default model, serve it on http://localhost:3000
#   make test    set up and run the test suite (what CI runs)
#   make container, make container-test   the CPU image (README "Build and ship")
#   make container-gpu                     the GPU image (README "The GPU image")

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 3000
MODEL  ?= dialogue-bart-small:latest
EVAL_SUBSET ?= ci
# Training runs and their resumable checkpoints: outside the repository (GBs of optimizer state over time).
TRAIN_OUT ?= $(HOME)/.cache/dialogue-summarizer/train

export BENTOML_DO_NOT_TRACK := true
export SUMMARIZER_MODEL ?= $(MODEL)

.PHONY: setup serve test import-default import-served-model import-model soak train boundaries finetune gate bento eval baseline collector bench loadtest drill profile clean \
	lock-cpu base-image container container-test lock-gpu bento-gpu dockerfile-gpu container-gpu

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: the CPU build where it is provided locally, so no other package pulls
	# several GB of CUDA wheels (on a GPU machine PyPI's torch==2.13.0 is the CUDA build).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

setup: $(BIN)/.installed

import-default: setup
	$(BIN)/python -m model_store import-default

# make import-model SOURCE=facebook/bart-large-cnn NAME=bart-large-cnn
import-model: setup
	$(BIN)/python -m model_store import $(SOURCE) --name $(NAME)

# The shipped default model is imported when it is the one asked for (MODEL, or SUMMARIZER_MODEL); another must
# be in the store already: the service says how to import it when it is not.
DEFAULT_MODEL := dialogue-bart-small
import-served-model: setup
ifeq ($(firstword $(subst :, ,$(SUMMARIZER_MODEL))),$(DEFAULT_MODEL))
	$(BIN)/python -m model_store import-default
endif

serve: import-served-model
	$(BIN)/bentoml serve service:DialogueSummarizer --port $(PORT)

test: setup
	$(BIN)/python -m pytest

# Retrain the default model (model_store/default_model/README.md): stage 1 denoising pre-training on the training
# dialogues (BART text infilling, speaker names as #PersonN# placeholders, 2 epochs), stage 2 summarization from
# stage 1's weights (6 epochs of a cosine schedule; every epoch kept, the one best on DialogSum validation is
# `best`), saved blocking only repeated 6-grams of tokens by default (chosen on DialogSum validation).
# Each stage resumes from its checkpoint in $(TRAIN_OUT) when the machine still has it; the result is
# $(TRAIN_OUT)/stage2/best. About 3 h 40 min on two CPU cores, minutes on a GPU.
train: setup
	$(BIN)/python -m training.train_default --out $(TRAIN_OUT)/stage1 --denoise --speaker-placeholders --epochs 2 \
	  --max-target-tokens 256 --resume
	$(BIN)/python -m training.train_default --out $(TRAIN_OUT)/stage2 --init-from $(TRAIN_OUT)/stage1/last \
	  --speaker-placeholders --epochs 6 --no-repeat-ngram-size 6 --save-epochs --resume

# Retrain where long dialogues are cut (serving/conversation_boundaries.json, README "Long dialogues"): a logistic
# regression on the gaps between turns of training dialogues joined 2-8 at a time. About 5 minutes on two cores.
boundaries: setup
	$(BIN)/python -m training.boundaries

# Learning from feedback (README "Learning from feedback"): fine-tune the served model ($(MODEL)) on the JSONL of
# `python -m feedback export`, import it as <name>-feedback, run the ROUGE-L gate; BENTO=1 also builds the Bento
# when the gate passes. FINETUNE_ARGS passes more options (python -m training.finetune_feedback --help).
#   make finetune FEEDBACK=feedback.jsonl [BENTO=1] [FINETUNE_ARGS="--epochs 5"]
FEEDBACK ?=
ifneq ($(filter finetune,$(MAKECMDGOALS)),)
ifeq ($(FEEDBACK),)
$(error make finetune needs FEEDBACK=path.jsonl: the file `python -m feedback export` writes)
endif
endif
finetune: import-served-model
	$(BIN)/python -m training.finetune_feedback --feedback $(FEEDBACK) --model $(SUMMARIZER_MODEL) \
	  --subset $(EVAL_SUBSET) $(if $(BENTO),--bento) $(FINETUNE_ARGS)

# ROUGE-L gate: the served model ($(MODEL)) against eval/baselines/<name>.json on the fixed seeded subset
gate: import-default
	$(BIN)/python -m eval gate --subset $(EVAL_SUBSET)

# The gate, then `bentoml build` with the scores as Bento labels (nothing is built when the gate fails)
bento: import-default
	$(BIN)/python -m eval bento --subset $(EVAL_SUBSET)

# The full suite: DialogSum test 500 + SAMSum validation 818, PyTorch and ONNX Runtime; report in runs/eval/
eval: import-default
	$(BIN)/python -m eval run --subset full

# Rewrite eval/baselines/<name>.json ('ci' and 'full') from the current model; review the diff, commit
baseline: import-default
	$(BIN)/python -m eval baseline --subset all

# Benchmarks: service vs direct generate(), batching on/off, vs FastAPI + pipeline, ONNX vs PyTorch (+int8),
# cold start and memory; prints a table, writes bench/results/*.json. `python -m bench --quick` for a smoke run.
bench: import-default
	$(BIN)/python -m bench

# Load test with locust (headless): ramp 10 -> 50 users, then past capacity; cost per 1,000 requests/tokens
loadtest: import-default
	$(BIN)/python -m bench.loadtest

# Fault drill: SIGKILL each kind of worker (ONNX, PyTorch, the API) under 16 clients; failures, recovery time
drill: import-default
	$(BIN)/python -m bench.drill

# Soak: 50 clients for 10 minutes (SOAK_MINUTES), the OTLP collector stopped and restarted mid-way; memory, open
# files, errors and latency per criterion, PASS/FAIL; writes bench/results/soak.json (README "Soak")
SOAK_MINUTES ?= 10
soak: import-default
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

# Where ONNX Runtime's time goes (encoder, decoder by layer part, generate() loop) at batch sizes 1, 8, 32
profile: import-default
	$(BIN)/python -m bench.profile

# Local OTLP collector (rotel) on 127.0.0.1, gRPC $(GRPC_PORT) and HTTP $(HTTP_PORT); prints what it receives.
# `make collector GRPC_PORT=0 HTTP_PORT=0`: free ports, printed at start.
GRPC_PORT ?= 4317
HTTP_PORT ?= 4318
collector: setup
	$(BIN)/python -m observability.collector --grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT)

# The CPU image: the gated Bento (make bento) containerized by BentoML with buildah (podman or docker with
# CONTAINER_BACKEND=...), on the debootstrapped Debian base of `make base-image` unless BASE_IMAGE names
# another (e.g. python:3.11-slim-bookworm where a registry is reachable). CA_BUNDLE: a PEM bundle pip trusts
# during the build (default: $$PIP_CERT when set), PIP_CONF: a pip.conf (a mirror); both are build secrets,
# never in a layer.
CONTAINER_IMAGE   ?= dialogue-summarizer:latest
CONTAINER_BACKEND ?= buildah
BASE_IMAGE        ?=
LOCAL_BASE_IMAGE  := localhost/dialogue-summarizer-base:bookworm
CA_BUNDLE         ?= $(PIP_CERT)
PIP_CONF          ?=

# requirements-cpu.lock.txt, what the CPU image installs, from requirements-cpu.txt (needs PyPI): uv pip compile
# for the base's Python on Linux x86_64 (container/locks.py); `python -m container resolve` checks it with pip
lock-cpu: setup
	$(BIN)/python -m container lock --recipe cpu

# Debian bookworm + python3 from Debian's packages (debootstrap, root), imported into podman; kept once built
base-image:
	container/base-image.sh $(LOCAL_BASE_IMAGE)

container: bento $(if $(BASE_IMAGE),,base-image)
	$(BIN)/python -m container build --bento dialogue-summarizer:latest --image $(CONTAINER_IMAGE) \
	  --backend $(CONTAINER_BACKEND) --base-image $(or $(BASE_IMAGE),$(LOCAL_BASE_IMAGE)) \
	  $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE)) $(if $(PIP_CONF),--pip-conf $(PIP_CONF))

# Builds the image, then runs it offline and checks it (python -m container test --help)
container-test: container
	$(BIN)/python -m container test --image $(CONTAINER_IMAGE) $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE))

# The GPU image: the gated GPU Bento (bentofile.gpu.yaml: PyTorch CUDA fp16, ONNX Runtime fallback) on
# nvidia/cuda:13.0.2-base-ubuntu24.04 (GPU_BASE_IMAGE overrides it), same template, secrets and backends as the
# CPU image. Building it needs that image's registry (and an Ubuntu mirror) and about 3 GB of wheels from PyPI;
# where there is none, `make dockerfile-gpu` renders what would be built.
GPU_IMAGE      ?= dialogue-summarizer-gpu:latest
GPU_BASE_IMAGE ?=

# requirements-gpu.lock.txt (the CPU lock's packages + torch's CUDA build + transformers), for Python 3.12
lock-gpu: setup
	$(BIN)/python -m container lock --recipe gpu

bento-gpu: import-default
	$(BIN)/python -m eval bento --bentofile bentofile.gpu.yaml

dockerfile-gpu: bento-gpu
	$(BIN)/python -m container dockerfile --bento dialogue-summarizer-gpu:latest

container-gpu: bento-gpu
	$(BIN)/python -m container build --bento dialogue-summarizer-gpu:latest --image $(GPU_IMAGE) \
	  --backend $(CONTAINER_BACKEND) $(if $(GPU_BASE_IMAGE),--base-image $(GPU_BASE_IMAGE)) \
	  $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE)) $(if $(PIP_CONF),--pip-conf $(PIP_CONF))

clean:
	rm -rf $(VENV) .pytest_cache .eval_cache
