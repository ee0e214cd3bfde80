"""session segments: each session's browser (family and major version) and sessions per segment minute

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:00:00

Sessions stored before this revision have no user agent on record: their segment stays NULL and they
count in `session_minutes` only, so segment tests start with the sessions digested from here on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import detector.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("session_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segment", sa.String(length=64), nullable=True))
    op.create_table(
        "session_segment_minutes",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("release", sa.String(length=250), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("minute", detector.store.types.UTCDateTime(), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("started", sa.Integer(), nullable=False),
        sa.Column("errored", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project_id", "release", "environment", "minute", "segment"),
    )


def downgrade() -> None:
    op.drop_table("session_segment_minutes")
    with op.batch_alter_table("session_states", schema=None) as batch_op:
        batch_op.drop_column("segment")
