"""Run ``python -m eval`` in this process (as the gate tests do) and read the report it wrote."""

from __future__ import annotations

import json
from pathlib import Path


def cli(*args: str) -> int:
    from eval.__main__ import main

    return main(list(args))


def read_report(directory: Path) -> tuple[str, dict]:
    return (directory / "report.md").read_text(), json.loads((directory / "report.json").read_text())
