"""Two processes writing one SQLite feedback file at once (as the service's API workers do): WAL and the busy
timeout make every write wait its turn instead of failing; nothing is lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
WRITES = 300
WRITER = """
import sys, time
from feedback.store import AnswerRecord, SQLiteStore
path, writer, start_at, writes = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
store = SQLiteStore(path)
while time.time() < start_at:
    time.sleep(0.001)
for n in range(writes):
    request_id = f"{writer}{n:031x}"
    store.record([AnswerRecord(request_id, time.time(), "m:1", "/summarize", "{}", "onnx-cpu", "d" * 64, "s" * 64,
                               10, 5, False, False)])
    store.submit(request_id, "good" if n % 2 else "bad", None, f"from writer {writer}")
store.close()
"""


def test_two_processes_write_at_once_and_nothing_is_lost(tmp_path):
    db = tmp_path / "feedback.sqlite3"
    start_at = time.time() + 3  # both import first, then write together (the first write also makes the tables)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), w, str(start_at), str(WRITES)],
                                cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True) for w in "ab"]
    for writer in writers:
        _, errors = writer.communicate(timeout=300)
        assert writer.returncode == 0, errors
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        order = [row[0][0] for row in conn.execute("SELECT request_id FROM answers ORDER BY created_at")]
        rated = conn.execute("SELECT substr(request_id, 1, 1), count(*) FROM feedback GROUP BY 1").fetchall()
    assert len(order) == 2 * WRITES and sorted(rated) == [("a", WRITES), ("b", WRITES)]
    switches = sum(1 for x, y in zip(order, order[1:]) if x != y)
    assert switches >= 10, f"the two writers did not overlap in time ({switches} switches between them)"
