"""Two processes writing one SQLite feedback file at once (as the service's API workers do): WAL and the busy
timeout make every write wait its turn instead of failing; nothing is lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WRITES = 500
WRITER = """
import sys, time
from pathlib import Path
from feedback.store import AnswerRecord, SQLiteStore
path, writer, go, writes = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
store = SQLiteStore(path)
Path(f"{go}.{writer}").touch()  # imported: ready
while not go.exists():
    time.sleep(0.001)
for n in range(writes):
    request_id = f"{writer}{n:031x}"
    store.record([AnswerRecord(request_id, time.time(), "m:1", "/summarize", "{}", "onnx-cpu", "d" * 64, "s" * 64,
                               10, 5, False, False)])
    store.submit(request_id, "good" if n % 2 else "bad", None, f"from writer {writer}")
store.close()
"""


def test_two_processes_write_at_once_and_nothing_is_lost(tmp_path):
    db, go = tmp_path / "feedback.sqlite3", tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), w, str(go), str(WRITES)],
                                cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True) for w in "ab"]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{w}").exists() for w in "ab"):  # both imported: released together
        assert time.monotonic() < deadline and all(p.poll() is None for p in writers), "a writer did not start"
        time.sleep(0.01)
    go.touch()
    for writer in writers:
        _, errors = writer.communicate(timeout=300)
        assert writer.returncode == 0, errors
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        spans = dict((w, (first, last)) for w, first, last in conn.execute(
            "SELECT substr(request_id, 1, 1), min(created_at), max(created_at) FROM answers GROUP BY 1"))
        counts = conn.execute("SELECT (SELECT count(*) FROM answers), (SELECT count(*) FROM feedback)").fetchone()
    assert counts == (2 * WRITES, 2 * WRITES)
    assert max(spans["a"][0], spans["b"][0]) < min(spans["a"][1], spans["b"][1]), \
        f"the two writers did not write at the same time: {spans}"


def test_a_lock_sqlite_answers_at_once_is_waited_for_within_the_busy_timeout():
    """SQLite answers "database is locked" without waiting where waiting could deadlock (asking for WAL while
    another process switches a new file to it): the store tries again, within its busy timeout, and lets any
    other error, or a lock that outlasts the timeout, through."""
    from feedback.store import _while_locked

    now = [0.0]
    answers = iter([sqlite3.OperationalError("database is locked")] * 3 + ["wal"])

    def pragma():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sleep(seconds):
        now[0] += seconds

    assert _while_locked(pragma, 1.0, clock=lambda: now[0], sleep=sleep) == "wal"
    assert 0 < now[0] < 0.01  # waited a little, three times

    def locked():
        raise sqlite3.OperationalError("database is locked")

    now[0] = 0.0
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _while_locked(locked, 1.0, clock=lambda: now[0], sleep=sleep)
    assert 1.0 <= now[0] < 1.1  # given up at the timeout, not before

    def broken():
        now[0] += 1
        raise sqlite3.OperationalError("disk I/O error")

    now[0] = 0.0
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _while_locked(broken, 10.0, clock=lambda: now[0], sleep=sleep)
    assert now[0] == 1  # not tried again
