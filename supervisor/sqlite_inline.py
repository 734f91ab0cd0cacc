"""Small SQLite commits made on the event loop, without a trip to the writer thread.

A lone job's commit (its submit, or its start and end together) is a few rows. Sent to the
writer thread it cost 0.5 to 0.7 ms of latency on a 2-core machine, nearly all of it the hand-
off (waking the thread, the GIL going to it and back, waking the loop), for 20 to 50 us of
SQLite work. Made here it costs only that work: in WAL mode with synchronous=NORMAL a commit
appends a few pages to the WAL in the page cache and syncs nothing.

What could make such a commit wait never happens here:
  * checkpoints (they sync): this connection never checkpoints (wal_autocheckpoint=0); every
    CHECKPOINT_EVERY inline commits the store sends a batch through its thread instead, which
    checkpoints there;
  * another connection holding the write lock: busy_timeout is 0 and the transaction starts
    with BEGIN IMMEDIATE, so a busy database answers at once and the batch goes to the thread,
    which waits for the lock there;
  * big batches and SQLAlchemy statements: they go to the thread (`takes`); log bytes are
    never in a batch (`supervisor.log_writer`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

CHECKPOINT_EVERY = 200  # inline commits between two batches sent through the thread


class InlineCommits:
    """`max_rows`: the most rows a batch committed here may have (`[database] inline_rows`)."""

    def __init__(self, path: str, max_rows: int) -> None:
        self.max_rows = max_rows
        self._conn = sqlite3.connect(path, timeout=0, isolation_level=None)  # timeout: busy_timeout 0
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self.since_checkpoint = 0
        self.commits = 0

    @property
    def checkpoint_due(self) -> bool:
        return self.since_checkpoint >= CHECKPOINT_EVERY

    def takes(self, rows: int, statements: int) -> bool:
        """Whether a batch of that shape may be committed here."""
        return rows <= self.max_rows and not statements and not self.checkpoint_due

    def commit(self, writes: Sequence[tuple[str, Any]]) -> bool:
        """Commit `writes` (plain SQL, rows) in one transaction. False, with nothing written, if
        another connection holds the write lock; any other error is raised after a rollback."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return False
            raise
        try:
            for sql, rows in writes:
                self._conn.executemany(sql, rows)
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.rollback()
            raise
        self.since_checkpoint += 1
        self.commits += 1
        return True

    def checkpointed(self) -> None:
        self.since_checkpoint = 0

    def close(self) -> None:
        self._conn.close()
