"""The supervisor's tables (SQLAlchemy 2 Core), shared by SQLite and PostgreSQL.

The database is built and upgraded by the Alembic revisions of `supervisor.migrations`, never
by `metadata.create_all`: a schema change here comes with a new revision there (a test checks
that they agree). SCHEMA_VERSION is the `schema_version` row of `jobvisor_meta`, which the
jobvisor releases before migrations read and refuse when it is above theirs: a revision that
an older release must not write through raises it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text,
)

SCHEMA_VERSION = 1

metadata = MetaData()

# A job id sorts by creation time byte for byte (`jobvisor.ids`): compared as bytes in
# PostgreSQL too ("C"), whatever the database's default collation, which may order otherwise
# and costs more per comparison. SQLite compares bytes already.
JOB_ID = String(32).with_variant(String(32, collation="C"), "postgresql")

jobs = Table(
    "jobs",
    metadata,
    Column("id", JOB_ID, primary_key=True),  # sortable: ORDER BY id == creation order
    Column("owner", String(128), nullable=False),
    Column("name", String(256), nullable=False, default=""),
    Column("code", String(128), nullable=False),
    Column("spec", LargeBinary, nullable=False),  # msgpack of (params, resources): opaque here
    Column("driver", String(64), nullable=False),
    Column("cpus", Integer, nullable=False),
    Column("max_retries", Integer, nullable=False, default=0),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=1),
    Column("reason", Text, nullable=False, default=""),
    Column("exit_code", Integer),
    Column("result", JSON),
    Column("agent_id", String(32)),
    Column("info", JSON),
    Column("progress", Float),  # last reported; written with the next transition, not per report
    Column("progress_message", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("updated_at", Float, nullable=False),
)
Index("ix_jobs_owner_id", jobs.c.owner, jobs.c.id)
Index("ix_jobs_state", jobs.c.state)

transitions = Table(
    "job_transitions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("at", Float, nullable=False),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("info", JSON),
)

meta = Table(
    "jobvisor_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

