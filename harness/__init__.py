"""Processes the tests, benchmarks and tools start: one harness for all of them (see process.py)."""

from harness.bentoml import bentoml_serve
from harness.process import ManagedProcess, free_port, http_ready, ports_listening
from harness.workers import Worker, replacement, service_workers, wait_answering

__all__ = ["ManagedProcess", "Worker", "bentoml_serve", "free_port", "http_ready", "ports_listening", "replacement",
           "service_workers", "wait_answering"]
