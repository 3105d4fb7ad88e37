"""Two processes writing one SQLite feedback file at once (as the service's API workers do): WAL and the busy
timeout make every write wait its turn instead of failing; nothing is lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

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
