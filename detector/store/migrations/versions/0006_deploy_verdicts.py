"""deploy verdicts: each deploy's verdict and its counts, per-project gate settings, the failing webhook

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import detector.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gate_tolerance", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("gate_absolute_margin", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("gate_min_sessions", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("gate_watch_minutes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("verdict_webhook_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("verdict_webhook_secret", sa.String(length=128), nullable=True))
    op.create_table(
        "deploy_verdicts",
        sa.Column("deploy_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("measured_at", detector.store.types.UTCDateTime(), nullable=False),
        sa.Column("inputs", detector.store.types.Json, nullable=False),
        sa.Column("changed_at", detector.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["deploy_id"], ["deploys.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("deploy_id"),
    )
    op.create_index("ix_deploy_verdicts_project_id", "deploy_verdicts", ["project_id"])
    op.create_table(
        "verdict_webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deploy_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("payload", detector.store.types.Json, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", detector.store.types.UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", detector.store.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", detector.store.types.UTCDateTime(), nullable=False),
        sa.Column("sent_at", detector.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["deploy_id"], ["deploys.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("deploy_id"),
    )


def downgrade() -> None:
    op.drop_table("verdict_webhooks")
    op.drop_index("ix_deploy_verdicts_project_id", table_name="deploy_verdicts")
    op.drop_table("deploy_verdicts")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        for column in (
            "verdict_webhook_secret",
            "verdict_webhook_url",
            "gate_watch_minutes",
            "gate_min_sessions",
            "gate_absolute_margin",
            "gate_tolerance",
        ):
            batch_op.drop_column(column)
