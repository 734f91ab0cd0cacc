"""The store's writes to PostgreSQL: SQLAlchemy Core on the async engine (asyncpg).

A batch is one transaction of at most one executemany per table (new jobs, changed jobs,
transitions, events) plus the statements it carries; asyncpg sends an executemany's rows in one
pipelined round trip, so a batch costs a few round trips whatever its size. Nothing here runs
on the loop for longer than building the rows.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from supervisor.event_log import prune_step
from supervisor.store_writer import Batch, core_writes


class PostgresWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass  # the engine is the store's

    async def commit(self, batch: Batch) -> None:
        writes = core_writes(batch)  # snapshots, before the first await
        async with self.engine.begin() as conn:
            for statement, params in writes:
                if params is not None:
                    await conn.execute(statement, params)
                else:
                    await conn.execute(statement)

    async def prune(self, before_at: float, upto_id: int, keep_from: int) -> int:
        async with self.engine.begin() as conn:
            return await conn.run_sync(prune_step, before_at, upto_id, keep_from)
