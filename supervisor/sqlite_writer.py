"""The store's writes to SQLite: plain SQL on sqlite3 connections, never through the loop's
async engine.

A batch of a few rows is committed on the loop itself (`supervisor.sqlite_inline`); any other
goes to one writer thread with a plain sqlite3 connection, where the whole transaction costs
one thread hop instead of one per statement through aiosqlite. The hot rows
are positional tuples (`supervisor.sqlite_rows`); the store's other statements (agents) go
through SQLAlchemy on the same thread. Every so many inline commits one batch goes through the
thread and checkpoints the WAL there, since the inline connection never syncs.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url

from supervisor import sqlite_rows
from supervisor.event_log import prune_step
from supervisor.sqlite_inline import InlineCommits
from supervisor.store_writer import Batch


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Every connection of the store to SQLite: WAL, and no sync per commit."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class SqliteWriter:
    """`inline_rows`: the most rows a batch committed on the loop may have (0: none)."""

    def __init__(self, url: str, *, inline_rows: int) -> None:
        self.inline_rows = inline_rows
        sync_url = make_url(url).set(drivername="sqlite")
        self.database = sync_url.database
        self._engine = create_engine(sync_url)
        event.listen(self._engine, "connect", sqlite_pragmas)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self.inline: InlineCommits | None = None

    async def open(self) -> None:
        if self.inline_rows > 0 and self.database not in (None, "", ":memory:"):
            self.inline = InlineCommits(self.database, self.inline_rows)

    async def close(self) -> None:
        if self.inline is not None:
            self.inline.close()
        self._engine.dispose()
        self._executor.shutdown(wait=False)

    @staticmethod
    def writes(batch: Batch) -> list[tuple[Any, Any]]:
        """The batch as plain SQL with tuples (snapshots taken now, on the loop thread), then
        the SQLAlchemy statements it carries."""
        writes: list[tuple[Any, Any]] = []
        if batch.inserts:
            writes.append((sqlite_rows.INSERT_JOBS, sqlite_rows.insert_rows(batch.inserts.values())))
        if batch.dirty:
            writes.append((sqlite_rows.UPDATE_JOBS, sqlite_rows.update_rows(batch.dirty.values())))
        if batch.transitions:
            writes.append((sqlite_rows.INSERT_TRANSITIONS, sqlite_rows.transition_rows(batch.transitions)))
        if batch.events:
            writes.append((sqlite_rows.INSERT_EVENTS, sqlite_rows.event_rows(batch.events)))
        writes.extend(batch.statements)
        return writes

    async def commit(self, batch: Batch) -> None:
        """On the loop when it is a few rows (they cost less there than a trip to the thread,
        see `supervisor.sqlite_inline`) and no other connection holds the lock, else in the
        writer thread."""
        writes = self.writes(batch)
        inline = self.inline
        if inline is not None and inline.takes(batch.rows, len(batch.statements)) and inline.commit(writes):
            return
        checkpoint = inline is not None and inline.checkpoint_due
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._commit_sync, writes, checkpoint)
        if checkpoint and inline is not None:
            inline.checkpointed()

    async def prune(self, before_at: float, upto_id: int, keep_from: int) -> int:
        """In the writer thread, between two commits (so on SQLite's one write lock in turn)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._prune_sync, before_at, upto_id, keep_from)

    def _prune_sync(self, before_at: float, upto_id: int, keep_from: int) -> int:
        with self._engine.begin() as conn:
            return prune_step(conn, before_at, upto_id, keep_from)

    def _commit_sync(self, writes: list[tuple[Any, Any]], checkpoint: bool) -> None:
        """One trip to the writer thread for a whole batch: one transaction, then (when the
        inline commits are due one) a checkpoint of the WAL."""
        with self._engine.begin() as conn:
            for statement, params in writes:
                if isinstance(statement, str):
                    conn.exec_driver_sql(statement, params)
                elif params is not None:
                    conn.execute(statement, params)
                else:
                    conn.execute(statement)
        if checkpoint:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
