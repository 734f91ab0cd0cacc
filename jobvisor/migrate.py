"""Alembic migrations of jobvisor's two databases, run from code: no alembic.ini is read.

Each database has its migration environment inside the package that owns it
(`supervisor/migrations` for jobs and agents, `api_gateway/migrations` for users and tokens),
and its own version table, so both can share one PostgreSQL database. `upgrade` brings a
database to the newest revision this code knows, in one transaction:

  * an empty database gets every revision;
  * a database made before jobvisor had migrations (its tables exist, no version table) is
    recognised by the schema's `legacy` check and stamped with the first revision, which is
    that schema, then upgraded: nothing is recreated;
  * a database at a revision this code does not know (a newer jobvisor wrote it) is refused
    with `SchemaTooNew` and left as it is.

Concurrent starts (`jobvisor up` and `jobvisor user add` on a fresh state dir) are serialised:
SQLite's transaction starts with BEGIN IMMEDIATE (the write lock, waited for), PostgreSQL's
takes an advisory lock first, so the second one finds the first one's work done.

Alembic is synchronous: it runs in a worker thread with an event loop of its own, through
`AsyncConnection.run_sync` on the async driver (asyncpg has no synchronous twin), so the
caller's event loop never waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable

# Alembic's own INFO lines (plugins set up as it is imported, the dialect's impl) say nothing
# to an operator; this module's lines say what was stamped or upgraded.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402 - after quieting its logger
from alembic.config import Config as AlembicConfig  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import Connection, MetaData, event, text  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from jobvisor.errors import ConfigError, Unavailable  # noqa: E402

log = logging.getLogger(__name__)

SQLITE_BUSY_MS = 30_000  # how long a migration waits for another process's write lock


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer jobvisor: this one must not touch it (permanent)."""


@dataclass(frozen=True)
class Schema:
    """One database's migration environment."""

    name: str  # for messages: "the jobs database"
    script_location: str  # package resource of the environment, "supervisor:migrations"
    version_table: str
    metadata: MetaData  # the tables the revisions build (compared in tests, never create_all'd)
    # On a database without the version table: True when it holds this schema as made before
    # migrations (it is then stamped with the first revision). May raise SchemaTooNew.
    legacy: Callable[[Connection], bool]

    def alembic_config(self, connection: Connection | None = None) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", self.script_location)
        cfg.set_main_option("path_separator", "os")
        cfg.attributes["schema"] = self
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    def script(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self.alembic_config())

    @property
    def baseline(self) -> str:
        """The first revision: the schema as it was before migrations."""
        (base,) = self.script().get_bases()
        return base

    @property
    def head(self) -> str:
        """The latest revision: the schema this jobvisor writes."""
        return self.script().get_current_head()

    @property
    def revisions(self) -> list[str]:
        """Every revision, first to latest: what a new database is built by."""
        return [rev.revision for rev in reversed(list(self.script().walk_revisions()))]

    def include_name(self, name: str | None, type_: str, _parent: Any) -> bool:
        """Only this schema's tables, when two schemas share a database (autogenerate)."""
        return type_ != "table" or name in self.metadata.tables


def run_env(context: Any) -> None:
    """The body of each environment's env.py: run the revisions on the connection that
    `upgrade` handed over, inside its transaction."""
    connection = context.config.attributes.get("connection")
    schema: Schema | None = context.config.attributes.get("schema")
    if connection is None or schema is None:
        raise RuntimeError("jobvisor runs its migrations itself (on start, or jobvisor.migrate.upgrade); "
                           "the alembic command line needs a connection handed over in code")
    context.configure(
        connection=connection, target_metadata=schema.metadata, version_table=schema.version_table,
        render_as_batch=True, include_name=schema.include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def current_revisions(connection: Connection, schema: Schema) -> tuple[str, ...]:
    ctx = MigrationContext.configure(connection, opts={"version_table": schema.version_table})
    return ctx.get_current_heads()


def _upgrade_sync(connection: Connection, schema: Schema) -> list[str]:
    """Stamp a pre-migration database, refuse a newer one, apply what is missing. Returns the
    revisions applied (empty when the database was up to date)."""
    if connection.dialect.name == "postgresql":
        # one migrator at a time per database; released with the transaction
        lock = zlib.crc32(schema.version_table.encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})
    cfg = schema.alembic_config(connection)
    script = ScriptDirectory.from_config(cfg)
    known = {rev.revision for rev in script.walk_revisions()}
    current = current_revisions(connection, schema)
    unknown = [rev for rev in current if rev not in known]
    if unknown:
        raise SchemaTooNew(
            f"{schema.name} is at revision {', '.join(unknown)}, which this jobvisor does not know: "
            f"a newer jobvisor upgraded it. Run that version (or newer) instead; this one will not touch it"
        )
    if not current and schema.legacy(connection):
        (base,) = script.get_bases()
        log.info("%s was made before migrations: stamping it with revision %s", schema.name, base)
        command.stamp(cfg, base)
        current = (base,)
    heads = set(script.get_heads())
    if set(current) == heads:
        return []
    lower = current[0] if current else "base"
    applied = [rev.revision for rev in script.iterate_revisions("heads", lower) if rev.revision not in current]
    log.info("upgrading %s from %s to %s", schema.name, ", ".join(current) or "nothing", ", ".join(sorted(heads)))
    command.upgrade(cfg, "heads")
    return list(reversed(applied))


def _serialised_sqlite(engine: Any) -> None:
    """SQLite through pysqlite/aiosqlite starts no transaction before DDL; take the write lock
    at BEGIN instead, so a whole migration is one transaction and concurrent ones queue."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        _wal(cursor)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _wal(cursor: Any) -> None:
    """Switch a database to WAL. SQLite answers "database is locked" at once, without waiting
    out busy_timeout, when another connection holds a transaction while the journal mode
    changes: two processes starting on a new database at once meet exactly there, so the
    switch is retried (in the migration's own thread) until busy_timeout's worth has passed."""
    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


async def upgrade(url: str, schema: Schema) -> list[str]:
    """Bring the database at `url` (an async SQLAlchemy URL) to this code's newest revision.
    Unavailable if the database cannot be reached or written; SchemaTooNew as above.

    The whole migration runs in a worker thread, on an event loop and a connection of its own:
    Alembic reads and imports its revision files and runs synchronously, and none of that may
    hold up the caller's loop (a supervisor already serving agents while the gateway opens)."""
    return await asyncio.to_thread(asyncio.run, _upgrade(url, schema))


async def _upgrade(url: str, schema: Schema) -> list[str]:
    engine = create_async_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        _serialised_sqlite(engine)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(_upgrade_sync, schema)
    except (SQLAlchemyError, OSError) as exc:
        raise Unavailable(f"cannot migrate {schema.name} at {engine.url.render_as_string()}: {exc}") from exc
    finally:
        await engine.dispose()


async def revisions_of(conn: AsyncConnection, schema: Schema) -> tuple[str, ...]:
    """The revisions a database is at (for tests and `config show`-like reports)."""
    return await conn.run_sync(current_revisions, schema)
