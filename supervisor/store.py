"""Persistence of jobs, transitions and agents, with one writer that batches commits.

Status updates that arrive together are committed together: every write goes to the pending
batch, a single writer task commits the batch in one transaction, and only then are its events
published and its waiters woken. Log bytes go beside the commits, not in them
(`supervisor.log_writer`): an end does not wait behind a job's output. So nothing is
published before it is committed, and thousands of transitions per second cost a handful of
commits. If a commit fails (disk full, database gone), the updates stay pending and are
retried with backoff; waiters get the error so the request that caused them can say so.

How a batch reaches the database is the `BatchWriter` of `supervisor.store_writer`: SQLite's
fast paths, or SQLAlchemy Core for PostgreSQL. Reads go through the async engine on both. The
schema is Alembic's (`supervisor.migrations`), upgraded by `open`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import time
from typing import Any, Callable, Iterable

from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobvisor.config import DatabaseConfig, EventsConfig
from jobvisor.errors import Unavailable
from jobvisor.ids import AgentId, JobId, UserId
from jobvisor.migrate import upgrade
from jobvisor.protocol.events import Event, EventKind
from jobvisor.states import TERMINAL_STATES, JobState
from jobvisor.pacing import BUSY_BATCH, LAZY_LINGER, batch_delay, linger
from jobvisor.timing import write_retry_delay
from supervisor import migrations, tables
from supervisor.compute_job import ComputeJob, Transition
from supervisor.event_log import PRUNE_CHUNK, Emitted, event_of_row, number
from supervisor.log_writer import LogWriter
from supervisor.logstore import LogStore
from supervisor.sqlite_inline import InlineCommits
from supervisor.sqlite_writer import sqlite_pragmas
from supervisor.store_writer import Batch, BatchWriter, writer_for

try:  # PostgreSQL's driver errors that are not wrapped by SQLAlchemy (asyncpg is a dependency)
    from asyncpg import PostgresError as _PostgresError
except ImportError:  # pragma: no cover
    _PostgresError = sqlite3.Error  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)


# what a failed commit may raise (it is then retried)
COMMIT_ERRORS = (SQLAlchemyError, sqlite3.Error, _PostgresError, OSError)


# ids per statement when rows are read by a list of ids
READ_CHUNK = 500

# above every character of an id (the gateway lets only [A-Za-z0-9_-] through as a prefix)
ID_PREFIX_END = "~"


class Store:
    def __init__(self, url: str, logs: LogStore, *, commit_interval: float = DatabaseConfig.commit_interval,
                 inline_rows: int = DatabaseConfig.inline_rows, events: EventsConfig = EventsConfig()) -> None:
        self.url = url
        self.events_config = events
        self.inline_rows = inline_rows
        self.logs = logs
        self.commit_interval = commit_interval
        self.engine: AsyncEngine = create_async_engine(url)  # reads (and PostgreSQL's writes)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
        self.writer: BatchWriter = writer_for(url, self.engine, inline_rows=inline_rows)
        self.log_writer = LogWriter(logs)
        self._batch = Batch()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._closing = False
        self.on_events: Callable[[list[Event]], None] = lambda events: None
        self.commits = 0
        # committed jobs per state: read once at open, then kept by each commit's transitions,
        # so GET /status costs nothing however many jobs the database holds
        self._counts: collections.Counter[str] = collections.Counter()
        # events: the next id to assign (from the largest in the database at open) and the
        # largest committed
        self._next_event_id = 1
        self.last_event_id = 0
        self._pruner: asyncio.Task | None = None

    @property
    def _inline(self) -> InlineCommits | None:
        """SQLite's commits on the loop, if this store makes them (tests look at them)."""
        return getattr(self.writer, "inline", None)

    async def open(self) -> None:
        """Upgrade the schema (a newer one is refused: SchemaTooNew), read the counts, and
        start the writer."""
        await upgrade(self.url, migrations.SCHEMA)
        try:
            async with self.engine.connect() as conn:
                rows = await conn.execute(select(tables.jobs.c.state, func.count()).group_by(tables.jobs.c.state))
                self._counts = collections.Counter({state: n for state, n in rows})
                self.last_event_id = (await conn.execute(select(func.max(tables.events.c.id)))).scalar() or 0
                self._next_event_id = self.last_event_id + 1
            await self.writer.open()
        except COMMIT_ERRORS as exc:
            raise Unavailable(f"cannot open the database {self.engine.url.render_as_string()}: {exc}") from exc
        self._writer = asyncio.create_task(self._run(), name="store-writer")
        self._pruner = asyncio.create_task(self._prune_loop(), name="store-events-pruner")
        self.log_writer.start()

    async def close(self) -> None:
        await self.log_writer.close()
        self._closing = True
        self._wake.set()
        if self._pruner is not None:
            self._pruner.cancel()
            await asyncio.gather(self._pruner, return_exceptions=True)
        if self._writer is not None:
            try:
                await asyncio.wait_for(self._writer, 10)
            except (asyncio.TimeoutError, Exception):
                log.exception("the store writer did not finish cleanly")
        await self.writer.close()
        await self.engine.dispose()

    # ------------------------------------------------------------------ writes

    def _urgent(self) -> None:
        self._batch.urgent = True
        self._wake.set()

    def insert(self, jobs: Iterable[ComputeJob]) -> None:
        for job in jobs:
            self._batch.inserts[job.id] = job
        self._urgent()

    def record(self, job: ComputeJob, transition: Transition | None = None, *, lazy: bool = False) -> None:
        """Persist the job's current row (and the transition that led to it) in the next batch.

        `lazy`: nobody waits for this one, and its commit (so its event) may come up to
        LAZY_LINGER later, together with whatever follows it."""
        batch = self._batch
        if job.id not in batch.inserts:
            batch.dirty[job.id] = job
        if transition is not None:
            batch.transitions.append(transition)
            batch.sources.append(transition)  # its event
        if lazy:
            self._wake.set()
        else:
            self._urgent()

    def emit(self, kind: EventKind, owner: UserId, data: dict, *, job_id: JobId | None = None,
             workflow_id: str | None = None) -> Emitted:
        """An event for the next commit: numbered when its batch is taken, published once it
        is committed, like a transition's. Its `id` is set by then (a caller that awaits
        `committed()` may answer with it)."""
        emitted = Emitted(kind, owner, data, job_id, workflow_id)
        self._batch.sources.append(emitted)
        self._urgent()
        return emitted

    def progress(self, job: ComputeJob) -> None:
        """The job's progress as a `progress` event of the next commit, which nobody waits
        for; a later report of the same job before that commit replaces it (its position
        too), so a chatty job costs one event per commit."""
        batch = self._batch
        index = batch.progress.get(job.id)
        if index is not None:
            batch.sources[index] = None
        batch.progress[job.id] = len(batch.sources)
        batch.sources.append(Emitted(EventKind.PROGRESS, job.owner, {
            "state": job.state.value, "attempt": job.attempt, "progress": job.progress, "message": job.progress_message,
        }, job.id, job.workflow_id))
        self._wake.set()

    def write_log(self, job_id: JobId, offset: int, data: bytes) -> None:
        self.log_writer.write(job_id, offset, data)

    def restart_log(self, job_id: JobId) -> None:
        """A new attempt's log starts empty, in order with the chunks around it (the run dir
        keeps the earlier attempt's output as output.N.log)."""
        self.log_writer.restart(job_id)

    def execute(self, statement: Any, params: Any = None) -> None:
        self._batch.statements.append((statement, params))
        self._urgent()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once everything recorded so far is committed."""
        self._batch.after.append(callback)
        self._urgent()

    def committed(self) -> asyncio.Future:
        """A future that resolves when everything recorded so far is committed (or fails)."""
        fut = asyncio.get_running_loop().create_future()
        self._batch.waiters.append(fut)
        self._urgent()
        return fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        last_start, last_size = float("-inf"), 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._closing:
                # Each commit writes whole pages of every table and index it touches, so under
                # a burst fewer, larger commits cost the writer and the loop far less per job.
                delay = batch_delay(loop.time(), last_start, last_size, interval=self.commit_interval, busy_size=BUSY_BATCH)
                if delay > 0:
                    await asyncio.sleep(delay)
                elif not self._batch.urgent and not self._batch.empty():
                    await linger(self._wake, lambda: self._batch.urgent or self._closing, LAZY_LINGER)
            batch, self._batch = self._batch, Batch()
            if batch.sources:
                batch.events = number(batch.sources, self._next_event_id)
                if batch.events:
                    self._next_event_id = batch.events[-1].id + 1
            last_start, last_size = loop.time(), len(batch.transitions)
            if batch.empty() and not batch.waiters and not batch.after:
                if self._closing:
                    return
                continue
            try:
                await self._commit(batch)
            except COMMIT_ERRORS as exc:
                failures += 1
                log.error("commit of %d jobs, %d transitions failed (%s); retrying", len(batch.dirty), len(batch.transitions), exc)
                error = Unavailable(f"the database cannot be written: {getattr(exc, 'orig', None) or exc}")
                for fut in batch.waiters:
                    if not fut.done():
                        fut.set_exception(error)
                        fut.exception()  # a waiter that gave up must not log "never retrieved"
                # inserts are not retried: their submitter got the error and forgot the jobs
                self._batch.dirty = {**batch.dirty, **self._batch.dirty}
                self._batch.transitions[:0] = [t for t in batch.transitions if t.job_id not in batch.inserts]
                self._retry_events(batch)
                self._batch.after[:0] = batch.after
                self._batch.urgent = self._batch.urgent or batch.urgent
                if self._closing and failures > 3:
                    return
                await asyncio.sleep(write_retry_delay(failures))
                self._wake.set()
                continue
            failures = 0
            self.commits += 1
            if self._closing and self._batch.empty() and not self._batch.waiters:
                return

    def _retry_events(self, failed: Batch) -> None:
        """A failed batch's events go first in the next one (numbered again then: their ids
        were never committed, nor published); those of jobs whose insert failed go."""
        kept = [s for s in failed.sources if s is not None and not (type(s) is Transition and s.job_id in failed.inserts)]
        if kept:
            current = self._batch
            current.sources[:0] = kept
            current.progress = {job_id: index + len(kept) for job_id, index in current.progress.items()}

    async def _commit(self, batch: Batch) -> None:
        await self.writer.commit(batch)
        for fut in batch.waiters:
            if not fut.done():
                fut.set_result(None)
        if batch.transitions:
            counts = self._counts
            for t in batch.transitions:
                if t.previous is not None:
                    counts[t.previous.value] -= 1
                counts[t.state.value] += 1
        if batch.events:
            self.last_event_id = batch.events[-1].id
            self.on_events(batch.events)
        for callback in batch.after:
            try:
                callback()
            except Exception:
                log.exception("an after-commit callback failed")

    # ------------------------------------------------------------------ reads

    async def read(self, statement: Any) -> list[Any]:
        """Rows of a SELECT (for the supervisor's other tables' owners, e.g. workflows)."""
        return await self._read(statement)

    async def _read(self, statement: Any) -> list[Any]:
        try:
            async with self.engine.connect() as conn:
                return list(await conn.execute(statement))
        except (SQLAlchemyError, OSError) as exc:  # OSError: a PostgreSQL server that cannot be reached
            raise Unavailable(f"the database cannot be read: {exc}") from exc

    async def load_unfinished(self) -> list[ComputeJob]:
        rows = await self._read(
            select(tables.jobs).where(tables.jobs.c.state.not_in([str(s) for s in TERMINAL_STATES])).order_by(tables.jobs.c.id)
        )
        return [ComputeJob.from_row(r) for r in rows]

    async def get_job(self, job_id: JobId) -> ComputeJob | None:
        rows = await self._read(select(tables.jobs).where(tables.jobs.c.id == job_id))
        return ComputeJob.from_row(rows[0]) if rows else None

    async def ends_of(self, job_ids: list[JobId]) -> dict[JobId, float | None]:
        """When each of `job_ids` that has a row ended (None: it has not, as far as the
        database knows); a job with no row is left out. Read in chunks, so a long list costs
        bounded statements."""
        ends: dict[JobId, float | None] = {}
        c = tables.jobs.c
        for start in range(0, len(job_ids), READ_CHUNK):
            chunk = job_ids[start:start + READ_CHUNK]
            for row in await self._read(select(c.id, c.state, c.finished_at, c.updated_at).where(c.id.in_(chunk))):
                ended = JobState(row.state).is_terminal
                ends[JobId(row.id)] = (row.finished_at or row.updated_at) if ended else None
        return ends

    async def list_jobs(
        self, owner: UserId | None, states: list[str], limit: int, after: str, *, name: str = "", id_prefix: str = "",
        array_id: str = "",
    ) -> list[ComputeJob]:
        query = select(tables.jobs)
        if array_id:
            query = query.where(tables.jobs.c.array_id == array_id)
        if owner is not None:
            query = query.where(tables.jobs.c.owner == owner)
        if states:
            query = query.where(tables.jobs.c.state.in_(states))
        if after:
            query = query.where(tables.jobs.c.id < after)
        if name:
            query = query.where(tables.jobs.c.name == name)
        if id_prefix:  # a range of the primary key (bytewise: collation C), not LIKE, so the index serves
            query = query.where(tables.jobs.c.id >= id_prefix, tables.jobs.c.id < id_prefix + ID_PREFIX_END)
        rows = await self._read(query.order_by(tables.jobs.c.id.desc()).limit(limit))
        return [ComputeJob.from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per state, as committed."""
        return {state: n for state, n in self._counts.items() if n > 0}

    async def transitions_of(self, job_id: JobId) -> list[dict]:
        rows = await self._read(
            select(tables.transitions).where(tables.transitions.c.job_id == job_id).order_by(tables.transitions.c.seq)
        )
        return [{"attempt": r.attempt, "state": r.state, "reason": r.reason, "at": r.at} for r in rows]

    async def list_events(self, owner: UserId | None, since: int, limit: int, job_id: str = "") -> list[Event]:
        """Committed events after id `since`, oldest first: `owner`'s (None: everyone's)."""
        query = select(tables.events).where(tables.events.c.id > since)
        if owner is not None:
            query = query.where(tables.events.c.owner == owner)
        if job_id:
            query = query.where(tables.events.c.job_id == job_id)
        rows = await self._read(query.order_by(tables.events.c.id).limit(limit))
        return [event_of_row(r) for r in rows]

    async def first_event_id(self) -> int | None:
        """The oldest event kept (None: none is)."""
        return (await self._read(select(func.min(tables.events.c.id))))[0][0]

    async def prune_events(self) -> int:
        """Prune events by age and number (`[events]`), a chunk per transaction, until none
        is left to go; the count deleted. The newest committed event always stays."""
        cfg = self.events_config
        deleted = 0
        while True:
            before_at = time.time() - cfg.keep_days * 86400 if cfg.keep_days > 0 else float("-inf")
            upto_id = self.last_event_id - cfg.keep_count if cfg.keep_count > 0 else 0
            step = await self.writer.prune(before_at, upto_id, self.last_event_id)
            deleted += step
            if step < PRUNE_CHUNK:
                return deleted
            await asyncio.sleep(0.01)  # let commits in between

    async def _prune_loop(self) -> None:
        while True:
            try:
                deleted = await self.prune_events()
                if deleted:
                    log.info("pruned %d events (keep_days %s, keep_count %d)", deleted,
                             self.events_config.keep_days, self.events_config.keep_count)
            except COMMIT_ERRORS as exc:
                log.warning("pruning events failed (%s); trying again in %.0f s", exc, self.events_config.prune_interval)
            await asyncio.sleep(self.events_config.prune_interval)

    # ------------------------------------------------------------------ agents

    async def load_agents(self) -> list[Any]:
        return await self._read(select(tables.agents))

    def add_agent(self, agent_id: AgentId, user: UserId, kind: str, token_hash: str, info: dict) -> None:
        self.execute(insert(tables.agents), [{
            "id": agent_id, "user": user, "kind": kind, "token_hash": token_hash,
            "created_at": time.time(), "info": info,
        }])

    def update_agent(self, agent_id: AgentId, info: dict) -> None:
        self.execute(update(tables.agents).where(tables.agents.c.id == agent_id), [{"info": info}])

    def remove_agent(self, agent_id: AgentId) -> None:
        self.execute(delete(tables.agents).where(tables.agents.c.id == agent_id))
