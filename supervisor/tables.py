"""The supervisor's tables (SQLAlchemy 2 Core), shared by SQLite and PostgreSQL.

The database is built and upgraded by the Alembic revisions of `supervisor.migrations`, never
by `metadata.create_all`: a schema change here comes with a new revision there (a test checks
that they agree). SCHEMA_VERSION is the `schema_version` row of `jobvisor_meta`, which the
jobvisor releases before migrations read and refuse when it is above theirs: a revision that
an older release must not write through raises it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON, BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text,
)

SCHEMA_VERSION = 2
BASELINE_SCHEMA_VERSION = 1  # what a database made before migrations says (revision 0001)

metadata = MetaData()

# A job id sorts by creation time byte for byte (`jobvisor.ids`): compared as bytes in
# PostgreSQL too ("C"), whatever the database's default collation, which may order otherwise
# and costs more per comparison. SQLite compares bytes already.
JOB_ID = String(32).with_variant(String(32, collation="C"), "postgresql")
# Event ids only grow (pruning never reuses one): 64 bits, as SQLite's INTEGER PRIMARY KEY is.
EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")

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
    # a workflow's job: its workflow, its name there, and the run of the workflow it belongs to
    Column("workflow_id", String(32)),
    Column("workflow_job", String(256)),
    Column("workflow_run", Integer),
    # a job array's element: the array (the id of its first job) and the element's index
    Column("array_id", String(32)),
    Column("array_index", Integer),
    Column("array_cap", Integer),  # how many of the array may hold slots at once (null: no cap)
    # retries: the end states besides `lost` that start a new attempt ("failed,timed_out"),
    # and when a retry waiting out its backoff may queue (null: not waiting)
    Column("retry_on", String(32)),
    Column("retry_at", Float),
    # attempts a planned stop of the supervisor interrupted: they run again without counting
    # against max_retries
    Column("interrupted", Integer, nullable=False, server_default="0"),
)
Index("ix_jobs_owner_id", jobs.c.owner, jobs.c.id)
Index("ix_jobs_workflow", jobs.c.workflow_id, jobs.c.workflow_run)
Index("ix_jobs_array", jobs.c.array_id)
Index("ix_jobs_state", jobs.c.state)
Index("ix_jobs_owner_name", jobs.c.owner, jobs.c.name)  # a job named by its name (GET /jobs?name=)

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

# A workflow: its current version's document lives in workflow_versions, one row per publish.
workflows = Table(
    "workflows",
    metadata,
    Column("id", JOB_ID, primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("version", Integer, nullable=False),  # the current (latest published) version
    Column("state", String(16), nullable=False),
    Column("on_failure", String(32), nullable=False),
    Column("run", Integer, nullable=False, default=0),  # executions so far; jobs carry theirs
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("info", JSON),
)
Index("ix_workflows_owner_name", workflows.c.owner, workflows.c.name, unique=True)

workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column("id", JOB_ID, primary_key=True),
    Column("workflow_id", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("author", String(128), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("sha256", String(64), nullable=False),  # of `document`, as stored
    Column("document", LargeBinary, nullable=False),  # the document as JSON (UTF-8)
)
Index("ix_workflow_versions_workflow", workflow_versions.c.workflow_id, workflow_versions.c.version, unique=True)

# Every event the stream carries, with its id (assigned by the store, increasing): job
# transitions, progress, workflow changes, user events. Pruned by age or count.
events = Table(
    "events",
    metadata,
    Column("id", EVENT_ID, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("job_id", String(32)),
    Column("workflow_id", String(32)),
    Column("data", JSON),
)
Index("ix_events_owner_id", events.c.owner, events.c.id)

# Timers that execute a workflow: once at `at`, every `every` seconds, or on a cron expression.
timers = Table(
    "timers",
    metadata,
    Column("id", JOB_ID, primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("workflow_id", String(32), nullable=False),
    Column("at", Float),
    Column("every", Float),
    Column("cron", String(128)),
    Column("next_at", Float),
    Column("last_at", Float),
    Column("created_at", Float, nullable=False),
    Column("info", JSON),
)

meta = Table(
    "jobvisor_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

