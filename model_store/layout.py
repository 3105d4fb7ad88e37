"""How a model is laid out in BentoML's model store: what the store writes and every reader expects."""

DEFAULT_MODEL_NAME = "dialogue-bart-small"  # the shipped default model's name in the store
HF_SUBDIR = "hf"  # inside a stored model: the Hugging Face files
ONNX_SUBDIR = "onnx"  # inside a stored model: the optimum ONNX export (with the decoder KV cache)
# Beside a model's Hugging Face files: its training set's binned input statistics (observability/drift.py),
# which the service's drift metrics compare requests with; copied by the import when the source has one.
REFERENCE_STATS = "reference_stats.json"
