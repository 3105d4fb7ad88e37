"""Processes the tests, benchmarks and tools start: one harness for all of them (see process.py)."""

from harness.process import ManagedProcess, free_port, http_ready, ports_listening

__all__ = ["ManagedProcess", "free_port", "http_ready", "ports_listening"]
