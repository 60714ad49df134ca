"""Ingest job leases and the blobs table: jobs claimed from the database by any replica.

``ingest_jobs`` gains who holds a job (``claimed_by``), until when
(``lease_until``) and how many times a worker started it (``attempts``), plus
an index on ``status`` for the workers' polling. ``blobs`` holds upload bytes
and document originals where replicas share one database.

Each step is skipped when what it adds is there already: a database opened by
an older build's start-up (which added new model columns in place) may have
some of it.

Revision ID: 0003_job_leases
Revises: 0002_postgres_search
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_job_leases"
down_revision: str | Sequence[str] | None = "0002_postgres_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JOB_COLUMNS = ("claimed_by", "lease_until", "attempts")
_STATUS_INDEX = "ix_ingest_jobs_status"


def _job_columns() -> list[sa.Column]:
    return [
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    ]


def upgrade() -> None:
    """Add the lease columns, the status index and the blobs table."""
    inspector = sa.inspect(op.get_bind())
    have = {column["name"] for column in inspector.get_columns("ingest_jobs")}
    missing = [column for column in _job_columns() if column.name not in have]
    indexed = {index["name"] for index in inspector.get_indexes("ingest_jobs")}
    if missing or _STATUS_INDEX not in indexed:
        with op.batch_alter_table("ingest_jobs") as batch:
            for column in missing:
                batch.add_column(column)
            if _STATUS_INDEX not in indexed:
                batch.create_index(_STATUS_INDEX, ["status"])
    if not inspector.has_table("blobs"):
        op.create_table(
            "blobs",
            sa.Column("key", sa.String(length=255), primary_key=True),
            sa.Column("data", sa.LargeBinary(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        )


def downgrade() -> None:
    """Drop the blobs table, the status index and the lease columns."""
    op.drop_table("blobs")
    with op.batch_alter_table("ingest_jobs") as batch:
        batch.drop_index(_STATUS_INDEX)
        for name in reversed(_JOB_COLUMNS):
            batch.drop_column(name)
