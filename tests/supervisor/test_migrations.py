"""The jobs database's Alembic migrations, on SQLite and PostgreSQL: the revisions build exactly
`supervisor.tables`; a database made before migrations is stamped and its rows kept; a newer
one is refused untouched; two processes migrating at once do not trip over each other."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from jobvisor.migrate import SchemaTooNew, revisions_of, upgrade
from jobvisor.states import JobState
from supervisor import migrations, tables
from supervisor.compute_job import ComputeJob
from supervisor.logstore import LogStore
from supervisor.store import Store

SCHEMA = migrations.SCHEMA


async def test_the_revisions_build_exactly_the_tables(database):
    assert await upgrade(database.store_url, SCHEMA) == SCHEMA.revisions
    assert await upgrade(database.store_url, SCHEMA) == []  # up to date: nothing to do
    engine = create_async_engine(database.store_url)
    try:
        async with engine.connect() as conn:
            assert await revisions_of(conn, SCHEMA) == (SCHEMA.head,)
            diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(
                sync, opts={"include_name": SCHEMA.include_name, "version_table": SCHEMA.version_table}), tables.metadata))
            meta = (await conn.execute(text("SELECT value FROM jobvisor_meta WHERE key = 'schema_version'"))).scalar()
    finally:
        await engine.dispose()
    assert diff == []
    assert meta == str(tables.SCHEMA_VERSION)


async def test_two_starts_at_once_migrate_once(database):
    results = await asyncio.gather(upgrade(database.store_url, SCHEMA), upgrade(database.store_url, SCHEMA))
    assert sorted(results) == [[], SCHEMA.revisions]


def _pre_migration_database(path, version: int = 1) -> None:
    """A jobs database as jobvisor made it before migrations: the first revision's tables and
    the version row (no Alembic version table), with a queued job in it."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        command.upgrade(SCHEMA.alembic_config(conn), SCHEMA.baseline)
        conn.execute(text(f"DROP TABLE {SCHEMA.version_table}"))
        conn.execute(text("DELETE FROM jobvisor_meta"))
    job = ComputeJob(id="j0001", owner="alice", code="shell", spec=ComputeJob.pack_spec({"argv": ["true"]}, {"cpus": 1}),
                     driver="local", cpus=1, created_at=1000.0, reason="submitted")
    with engine.begin() as conn:
        conn.execute(insert(tables.meta), [{"key": "schema_version", "value": str(version)}])
        row = {k: v for k, v in job.insert_row().items() if not k.startswith(("workflow_", "array_", "retry_", "interrupted"))}
        conn.execute(insert(tables.jobs), [row])
    engine.dispose()


async def test_a_database_made_before_migrations_is_stamped_and_kept(tmp_path):
    path = tmp_path / "jobvisor.sqlite"
    _pre_migration_database(path)
    store = Store(f"sqlite+aiosqlite:///{path}", LogStore(tmp_path / "logs"))
    await store.open()
    try:
        (job,) = await store.load_unfinished()
        assert job.id == "j0001" and job.state is JobState.QUEUED and job.unpack_spec()[0] == {"argv": ["true"]}
        assert store.counts() == {"queued": 1}
    finally:
        await store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute(f"SELECT version_num FROM {SCHEMA.version_table}").fetchall() == [(SCHEMA.head,)]
    finally:
        db.close()


async def test_a_pre_migration_database_of_a_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "jobvisor.sqlite"
    _pre_migration_database(path, version=tables.BASELINE_SCHEMA_VERSION + 1)
    store = Store(f"sqlite+aiosqlite:///{path}", LogStore(tmp_path / "logs"))
    with pytest.raises(SchemaTooNew, match="schema version 2"):
        await store.open()
    await store.close()


async def test_a_database_a_newer_jobvisor_migrated_is_refused_untouched(database):
    await upgrade(database.store_url, SCHEMA)
    engine = create_async_engine(database.store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"UPDATE {SCHEMA.version_table} SET version_num = '0099'"))
        with pytest.raises(SchemaTooNew, match="revision 0099.*newer jobvisor"):
            await upgrade(database.store_url, SCHEMA)
        async with engine.connect() as conn:
            assert await revisions_of(conn, SCHEMA) == ("0099",)
    finally:
        await engine.dispose()
