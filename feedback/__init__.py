"""Feedback: every answer recorded under its request_id, POST /feedback ratings and corrections, and the
export of rated answers as fine-tuning pairs (``python -m feedback export``).

    protocol.py   the wire models of POST /feedback (FeedbackRequest, FeedbackReceipt)
    store.py      SQLite (WAL, default) or PostgreSQL: the answers and feedback tables
    recording.py  the flow step that records answers; the route's submit
    export.py     rated answers -> JSONL pairs
"""

from __future__ import annotations

from pathlib import Path

from feedback.store import FeedbackStore, PostgresStore, SQLiteStore

SQLITE_FILE = Path("feedback") / "feedback.sqlite3"


def default_sqlite_path() -> Path:
    """$BENTOML_HOME/feedback/feedback.sqlite3: BentoML's home is writable wherever the service runs (the
    container's, the pod's volume), and ``python -m feedback`` finds the same file from the same settings."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get()) / SQLITE_FILE


def open_store(config) -> FeedbackStore:
    """The store a ServingConfig names: PostgreSQL for SUMMARIZER_FEEDBACK_URL, else SQLite at
    SUMMARIZER_FEEDBACK_PATH (default ``default_sqlite_path()``). Connects at its first use."""
    if config.feedback_url is not None:
        return PostgresStore(config.feedback_url.get_secret_value())
    return SQLiteStore(config.feedback_path or default_sqlite_path())
