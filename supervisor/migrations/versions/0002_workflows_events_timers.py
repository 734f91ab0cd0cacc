"""Workflows (with every published version), persisted events, timers; jobs learn their
workflow and their job array.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")
_EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's INTEGER PRIMARY KEY is 64-bit


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("workflow_id", sa.String(32)))
        batch.add_column(sa.Column("workflow_job", sa.String(256)))
        batch.add_column(sa.Column("workflow_run", sa.Integer))
        batch.add_column(sa.Column("array_id", sa.String(32)))
        batch.add_column(sa.Column("array_index", sa.Integer))
        batch.add_column(sa.Column("array_cap", sa.Integer))
        batch.add_column(sa.Column("retry_on", sa.String(32)))
        batch.add_column(sa.Column("retry_at", sa.Float))
    op.create_index("ix_jobs_workflow", "jobs", ["workflow_id", "workflow_run"])
    op.create_index("ix_jobs_array", "jobs", ["array_id"])
    op.create_index("ix_jobs_owner_name", "jobs", ["owner", "name"])
    op.create_table(
        "workflows",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("on_failure", sa.String(32), nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("info", sa.JSON),
    )
    op.create_index("ix_workflows_owner_name", "workflows", ["owner", "name"], unique=True)
    op.create_table(
        "workflow_versions",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("workflow_id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("document", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_workflow_versions_workflow", "workflow_versions", ["workflow_id", "version"], unique=True)
    op.create_table(
        "events",
        sa.Column("id", _EVENT_ID, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("job_id", sa.String(32)),
        sa.Column("workflow_id", sa.String(32)),
        sa.Column("data", sa.JSON),
    )
    op.create_index("ix_events_owner_id", "events", ["owner", "id"])
    op.create_table(
        "timers",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("workflow_id", sa.String(32), nullable=False),
        sa.Column("at", sa.Float),
        sa.Column("every", sa.Float),
        sa.Column("cron", sa.String(128)),
        sa.Column("next_at", sa.Float),
        sa.Column("last_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("info", sa.JSON),
    )
    # a jobvisor from before migrations must not write through this schema
    op.execute("UPDATE jobvisor_meta SET value = '2' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.execute("UPDATE jobvisor_meta SET value = '1' WHERE key = 'schema_version'")
    for table in ("timers", "events", "workflow_versions", "workflows"):
        op.drop_table(table)
    op.drop_index("ix_jobs_owner_name", "jobs")
    op.drop_index("ix_jobs_array", "jobs")
    op.drop_index("ix_jobs_workflow", "jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("retry_at", "retry_on", "array_cap", "array_index", "array_id", "workflow_run", "workflow_job", "workflow_id"):
            batch.drop_column(column)
