"""Benchmarks and load test of the dialogue summarizer (issue 6).

    python -m bench --help                 the harness: service vs direct generate(), batching on/off, a
                                           FastAPI + pipeline("summarization") baseline, ONNX Runtime vs
                                           PyTorch (and int8), cold start and memory; a table + JSON
    python -m bench.loadtest --help        locust against a real `bentoml serve`: ramp, past capacity, cost
    python -m bench.gpu --help             bart-large-cnn-shaped model on a GPU (fp16, 4 beams, 128 tokens)

Results go to bench/results/ (gitignored).
"""
