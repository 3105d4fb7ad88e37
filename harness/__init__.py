"""Processes the tests, benchmarks and tools start: one harness for all of them (see process.py)."""

from harness.bentoml import bentoml_serve
from harness.process import ManagedProcess, free_port, http_ready, ports_listening

__all__ = ["ManagedProcess", "bentoml_serve", "free_port", "http_ready", "ports_listening"]
