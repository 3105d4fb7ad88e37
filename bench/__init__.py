"""Benchmarks and load test of the dialogue summarizer (issue 6).

    python -m bench --help                 the harness: service vs direct generate(), batching on/off, a
                                           FastAPI + pipeline("summarization") baseline, ONNX Runtime vs
                                           PyTorch (and int8), cold start and memory; a table + JSON
    python -m bench.loadtest --help        locust against a real `bentoml serve`: ramp, past capacity, cost
    python -m bench.probes --help          /readyz and /livez latency while the service is 2x past its limit
    python -m bench.profile --help         where ONNX Runtime's time goes, per batch size
    python -m bench.gpu --help             bart-large-cnn-shaped model on a GPU (fp16, 4 beams, 128 tokens)
    python -m bench.telemetry_cost --help  throughput with OpenTelemetry export on vs off (a real collector)

The harness is small items sharing one context: run.py (command line, the run), context.py (model,
servers, engines, inputs), items/ (one module per item), report.py (the table). Shared by all: stats.py
(percentiles and spreads on numpy), load.py (closed-loop load through the project's client),
servers.py (the service and the baseline through ``harness``), prometheus.py (batch sizes from /metrics).
Results go to bench/results/ (gitignored).
"""
