"""Alembic migrations of the jobs database (jobs, transitions, agents), run by `Store.open`.

A schema change is a new revision in `versions/` (the next number, `down_revision` the
previous one) that changes `supervisor.tables` and the database alike; `tests/supervisor/
test_migrations.py` checks that the revisions build exactly the tables of `supervisor.tables`
on SQLite and on PostgreSQL. Revisions use `op.batch_alter_table` for changes SQLite cannot
ALTER in place.
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect, select

from jobvisor.migrate import Schema, SchemaTooNew
from supervisor import tables


def _legacy(connection: Connection) -> bool:
    """A database made by jobvisor before migrations: the tables and a `schema_version` row
    (1, the first revision's schema). A higher version came from a newer jobvisor."""
    if not inspect(connection).has_table(tables.jobs.name):
        return False
    version = None
    if inspect(connection).has_table(tables.meta.name):
        version = connection.execute(
            select(tables.meta.c.value).where(tables.meta.c.key == "schema_version")
        ).scalar()
    if version is not None and int(version) > tables.BASELINE_SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the jobs database has schema version {version}, newer than this jobvisor's "
            f"{tables.BASELINE_SCHEMA_VERSION}: upgrade jobvisor"
        )
    return True


SCHEMA = Schema(
    name="the jobs database",
    script_location="supervisor:migrations",
    version_table="alembic_version_jobs",
    metadata=tables.metadata,
    legacy=_legacy,
)
