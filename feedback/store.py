"""Where answers and their feedback are kept: SQLite (WAL) by default, PostgreSQL when the feedback URL says so.

Two tables, the same in both databases:

    answers   one row per answered dialogue, by request_id: when, model, resolved generation settings (JSON),
              route, backend, sha256 of dialogue and summary, token counts, truncated, cached; the dialogue and
              summary text only when retention is on (NULL otherwise)
    feedback  at most one row per request_id (a second submission replaces the first): rating, corrected
              summary, comment, when

Plain ``sqlite3`` and ``psycopg`` behind one small class: the SQL is the same but for the placeholder, so
SQLAlchemy would add a dependency and no code saved. Every method blocks; the service calls them in a thread
(``asyncio.to_thread``), never on the event loop, but for ``record_now``: an answer record written at once
when nothing has to be waited for (SQLite, no other writer holding the lock), which costs less than the hop
to a thread (README "Feedback"). Several processes write at once (the API workers): SQLite in WAL mode lets
readers go on while one writes, and ``busy_timeout`` makes a writer wait for the lock instead of failing.
SQLite copies its write-ahead log back into the database (a checkpoint, with an fsync) when the service
calls ``checkpoint``, off the request path, rather than inside whichever commit fills the log past its
1,000 pages (SQLite's default); ``WAL_BACKSTOP_PAGES`` still bounds the log should nobody call it.

A commit is durable across a killed service process (SQLite: WAL, ``synchronous=NORMAL``; PostgreSQL:
``synchronous_commit=off`` for answer records); a feedback's commit is also waited onto disk
(``synchronous=FULL``; PostgreSQL's default), so a power loss or a database crash does not take an accepted
feedback either.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
# A commit that finds the write-ahead log this long (4 KiB pages: ~40 MB) checkpoints it itself; the service's
# own checkpoints (RecordAnswers, every second or so) keep it far shorter.
WAL_BACKSTOP_PAGES = 10_000
_WOULD_WAIT = object()


@dataclass(frozen=True)
class AnswerRecord:
    """One answered dialogue, as the ``answers`` table keeps it."""

    request_id: str
    created_at: float  # Unix time, seconds
    model: str
    route: str
    settings: str  # the resolved GenerationSettings, as JSON
    backend: str
    dialogue_sha256: str
    summary_sha256: str
    input_tokens: int
    output_tokens: int
    truncated: bool
    cached: bool
    dialogue: str | None = None  # only with SUMMARIZER_FEEDBACK_RETAIN_TEXT=true
    summary: str | None = None


@dataclass(frozen=True)
class FeedbackRecord:
    request_id: str
    feedback_id: str
    created_at: float
    rating: str
    corrected_summary: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class Rated:
    """An answer with its feedback: what the export reads."""

    answer: AnswerRecord
    feedback: FeedbackRecord


class UnknownRequest(LookupError):
    """No answer is recorded under this request_id (never given, or older than the retention)."""


class StoreUnavailable(RuntimeError):
    """The feedback store cannot be reached or written (the database is down, the disk full)."""


_ANSWER_COLUMNS = [f for f in AnswerRecord.__dataclass_fields__]
_FEEDBACK_COLUMNS = [f for f in FeedbackRecord.__dataclass_fields__]

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS answers (
        request_id TEXT PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        model TEXT NOT NULL,
        route TEXT NOT NULL,
        settings TEXT NOT NULL,
        backend TEXT NOT NULL,
        dialogue_sha256 TEXT NOT NULL,
        summary_sha256 TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        truncated BOOLEAN NOT NULL,
        cached BOOLEAN NOT NULL,
        dialogue TEXT,
        summary TEXT)""",
    "CREATE INDEX IF NOT EXISTS answers_created_at ON answers (created_at)",
    """CREATE TABLE IF NOT EXISTS feedback (
        request_id TEXT PRIMARY KEY REFERENCES answers (request_id) ON DELETE CASCADE,
        feedback_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        rating TEXT NOT NULL,
        corrected_summary TEXT,
        comment TEXT)""",
    "CREATE INDEX IF NOT EXISTS feedback_created_at ON feedback (created_at)",
]

_INSERT_ANSWER = (f"INSERT INTO answers ({', '.join(_ANSWER_COLUMNS)}) VALUES ({', '.join('?' * len(_ANSWER_COLUMNS))})"
                  " ON CONFLICT (request_id) DO NOTHING")
_UPSERT_FEEDBACK = (f"INSERT INTO feedback ({', '.join(_FEEDBACK_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_FEEDBACK_COLUMNS))}) ON CONFLICT (request_id) DO UPDATE SET "
                    + ", ".join(f"{c} = excluded.{c}" for c in _FEEDBACK_COLUMNS if c != "request_id"))
_RATED = (f"SELECT {', '.join('a.' + c for c in _ANSWER_COLUMNS)}, {', '.join('f.' + c for c in _FEEDBACK_COLUMNS)} "
          "FROM feedback f JOIN answers a ON a.request_id = f.request_id WHERE f.created_at >= ? AND f.created_at < ? "
          "ORDER BY f.created_at, f.request_id")


class FeedbackStore:
    """The two tables in one database; thread-safe (one connection, used under a lock)."""

    placeholder = "?"
    description = "feedback store"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None

    # -- what the service and the export use

    def record(self, answers: Sequence[AnswerRecord]) -> None:
        """Keep these answers (a request_id already kept is left as it was)."""
        if answers:
            self._write(self._insert(answers))

    def _insert(self, answers: Sequence[AnswerRecord]):
        rows = [self._row(asdict(a)) for a in answers]
        return lambda cur: cur.executemany(self._sql(_INSERT_ANSWER), rows)

    def record_now(self, answers: Sequence[AnswerRecord]) -> bool:
        """``record``, if that needs no waiting (for another writer's lock, a connection, the network): True
        when recorded, False when nothing was done (then ``record`` them in a thread). Only a store that can
        tell overrides it."""
        return False

    def checkpoint(self) -> None:
        """Whatever the database does in the background of writes (SQLite: its write-ahead log copied back
        into the database); blocks. Nothing by default."""
        return None

    def submit(self, request_id: str, rating: str, corrected_summary: str | None, comment: str | None,
               ) -> tuple[FeedbackRecord, bool]:
        """Store the feedback for ``request_id``, replacing an earlier one; (the record, whether it replaced).
        Raises UnknownRequest when no answer is kept under that id."""
        entry = FeedbackRecord(request_id, uuid.uuid4().hex, time.time(), rating, corrected_summary, comment)

        def write(cur) -> bool:
            cur.execute(self._sql("SELECT (SELECT count(*) FROM answers WHERE request_id = ?), "
                                  "(SELECT count(*) FROM feedback WHERE request_id = ?)"), (request_id, request_id))
            known, earlier = cur.fetchone()
            if not known:
                raise UnknownRequest(request_id)
            cur.execute(self._sql(_UPSERT_FEEDBACK), self._row(asdict(entry)))
            return bool(earlier)

        return entry, self._write(write, durable=True)

    def answer(self, request_id: str) -> AnswerRecord | None:
        rows = self._read(f"SELECT {', '.join(_ANSWER_COLUMNS)} FROM answers WHERE request_id = ?", (request_id,))
        return _answer(rows[0]) if rows else None

    def feedback(self, request_id: str) -> FeedbackRecord | None:
        rows = self._read(f"SELECT {', '.join(_FEEDBACK_COLUMNS)} FROM feedback WHERE request_id = ?", (request_id,))
        return FeedbackRecord(*rows[0]) if rows else None

    def rated(self, since: float = 0.0, until: float = float("inf")) -> Iterator[Rated]:
        """Answers with feedback given in [since, until), oldest feedback first."""
        n = len(_ANSWER_COLUMNS)
        for row in self._read(_RATED, (since, min(until, 1e300))):
            yield Rated(_answer(row[:n]), FeedbackRecord(*row[n:]))

    def prune(self, older_than: float) -> int:
        """Delete the answers given before ``older_than`` (Unix time) and their feedback; how many answers."""
        def delete(cur) -> int:
            cur.execute(self._sql("DELETE FROM feedback WHERE request_id IN "
                                  "(SELECT request_id FROM answers WHERE created_at < ?)"), (older_than,))
            cur.execute(self._sql("DELETE FROM answers WHERE created_at < ?"), (older_than,))
            return cur.rowcount
        return self._write(delete)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    # -- what a database fills in

    def _connect(self):
        raise NotImplementedError

    def _begin(self, cur, durable: bool, wait: bool = True) -> bool:
        """Begins a write transaction; False (nothing begun) when ``wait`` is False and it would have to wait."""
        cur.execute("BEGIN")
        return True

    def _row(self, values: dict) -> tuple:
        return tuple(values.values())

    # -- shared plumbing

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _connection(self):
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _write(self, work, durable: bool = False):
        with self._lock:
            return self._locked_write(work, durable, wait=True)

    def _locked_write(self, work, durable: bool, wait: bool):
        """``work`` in a transaction, under ``self._lock``; ``_WOULD_WAIT`` when not ``wait`` and the
        transaction could not begin at once (see ``_begin``)."""
        try:
            conn = self._connection()
            cur = conn.cursor()
            try:
                if not self._begin(cur, durable, wait):
                    return _WOULD_WAIT
                result = work(cur)
                cur.execute("COMMIT")
                return result
            except BaseException:
                _rollback(cur)
                raise
            finally:
                cur.close()
        except UnknownRequest:
            raise
        except Exception as exc:
            self._broken()
            raise StoreUnavailable(f"{self.description}: {type(exc).__name__}: {exc}") from exc

    def _read(self, sql: str, params: tuple) -> list[tuple]:
        with self._lock:
            try:
                cur = self._connection().cursor()
                try:
                    cur.execute(self._sql(sql), params)
                    return list(cur.fetchall())
                finally:
                    cur.close()
            except Exception as exc:
                self._broken()
                raise StoreUnavailable(f"{self.description}: {type(exc).__name__}: {exc}") from exc

    def _broken(self) -> None:
        """After a failure the connection is dropped: the next call connects afresh (a restarted server)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass
            self._conn = None


class SQLiteStore(FeedbackStore):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.description = f"feedback store {self.path}"
        self._checkpoint_lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = None

    def _connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are the explicit BEGIN/COMMIT of _write.
        conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            mode = _while_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0],
                                 SQLITE_BUSY_TIMEOUT_MS / 1000)
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"{self.path} cannot use WAL (journal mode {mode}); "
                                               "put SUMMARIZER_FEEDBACK_PATH on a local file system")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES}")  # ``checkpoint`` does it
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("BEGIN IMMEDIATE")  # two workers starting at once create the tables one after the other
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def record_now(self, answers: Sequence[AnswerRecord]) -> bool:
        """Recorded at once when this process is connected, no thread of it is using the connection and no
        other process holds the write lock (a commit without fsync: ~0.05 ms); False otherwise."""
        if not answers:
            return True
        if self._conn is None or not self._lock.acquire(blocking=False):
            return False
        try:
            return self._locked_write(self._insert(answers), durable=False, wait=False) is not _WOULD_WAIT
        finally:
            self._lock.release()

    def checkpoint(self) -> None:
        """The write-ahead log copied back into the database as far as no reader still needs it (PASSIVE:
        waits for nobody), on a connection of its own: records go on meanwhile. Blocks for its fsyncs."""
        with self._checkpoint_lock:
            if not self.path.exists():
                return
            try:
                if self._checkpointer is None:
                    self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except Exception as exc:
                self._close_checkpointer()
                raise StoreUnavailable(f"{self.description}: checkpoint: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self._checkpoint_lock:
            self._close_checkpointer()
        super().close()

    def _close_checkpointer(self) -> None:
        if self._checkpointer is not None:
            try:
                self._checkpointer.close()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass
            self._checkpointer = None

    def _begin(self, cur, durable: bool, wait: bool = True) -> bool:
        # FULL for feedback: its commit is synced to disk before the 200 (a power loss keeps it too).
        cur.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        if wait:
            cur.execute("BEGIN IMMEDIATE")  # the write lock first: no deadlock between a read and a later write
            return True
        cur.execute("PRAGMA busy_timeout = 0")  # another process holds the write lock: SQLITE_BUSY at once
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):  # extended codes too
                return False
            raise
        finally:
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        return True


class PostgresStore(FeedbackStore):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.description = "feedback store (PostgreSQL)"  # the URL may hold a password: never in a message

    def _row(self, values: dict) -> tuple:
        # PostgreSQL's text cannot hold NUL, which JSON can carry ("\u0000"): kept as U+FFFD, as a decoder would.
        return tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in values.values())

    def _begin(self, cur, durable: bool, wait: bool = True) -> bool:
        cur.execute("BEGIN")
        if not durable:
            # As SQLite's synchronous=NORMAL: an answer record is not waited onto disk (a crash of the database
            # server may lose its last ~0.6 s of them; a killed service loses none). Feedback is waited for.
            cur.execute("SET LOCAL synchronous_commit = off")
        return True

    def _connect(self):
        import psycopg  # only where PostgreSQL is configured

        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("SELECT pg_advisory_xact_lock(1414)")  # workers starting at once create tables in turn
                for statement in SCHEMA:
                    cur.execute(statement)
                cur.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn


def _while_locked(operation, timeout_s: float, clock=time.monotonic, sleep=time.sleep):
    """``operation()``, tried again while SQLite answers "database is locked", for up to ``timeout_s``.

    The busy timeout does not cover every wait: to avoid a deadlock SQLite answers SQLITE_BUSY at once,
    without its busy handler, to a connection that would have to wait for a lock while holding one; asking
    for WAL while another process (a second API worker starting at the same moment) switches the new file
    to it or creates its tables is such a case (seen in CI: the worker failed its first write)."""
    deadline = clock() + timeout_s
    delay = 0.001
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or clock() >= deadline:
                raise
        sleep(delay)
        delay = min(2 * delay, 0.05)


def _rollback(cur) -> None:
    try:
        cur.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - nothing was begun, or the connection is gone: it is dropped anyway
        pass


def _answer(row: Sequence) -> AnswerRecord:
    values = dict(zip(_ANSWER_COLUMNS, row))
    values["truncated"], values["cached"] = bool(values["truncated"]), bool(values["cached"])
    return AnswerRecord(**values)


def settings_json(settings: Any) -> str:
    """Resolved generation settings as the ``settings`` column keeps them (sorted keys: comparable)."""
    return json.dumps(settings.model_dump(mode="json") if hasattr(settings, "model_dump") else settings,
                      sort_keys=True)
