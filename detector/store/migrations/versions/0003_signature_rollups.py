"""signature rollups: totals per signature and per (signature, release, environment), and who hit them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 18:50:00

The signature list used to count distinct users over raw events at every request (seconds on a
busy project). From here the digest keeps the totals as it counts each batch; this migration fills
them from the events and minute counts already stored (events that retention already deleted can
no longer add their users).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import detector.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("signatures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("events", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("users", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "signature_releases",
        sa.Column("signature_id", BIG_ID, nullable=False),
        sa.Column("release", sa.String(length=250), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.Column("first_seen", detector.store.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen", detector.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["signature_id"], ["signatures.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("signature_id", "release", "environment"),
    )
    op.create_table(
        "signature_users",
        sa.Column("signature_id", BIG_ID, nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("last_minute", detector.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["signature_id"], ["signatures.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("signature_id", "identity"),
    )
    op.create_index("ix_signature_users_recent", "signature_users", ["signature_id", "last_minute"], unique=False)
    op.create_table(
        "signature_release_users",
        sa.Column("signature_id", BIG_ID, nullable=False),
        sa.Column("release", sa.String(length=250), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("last_minute", detector.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["signature_id"], ["signatures.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("signature_id", "environment", "identity", "release"),
    )
    op.create_table(
        "signature_environments",
        sa.Column("signature_id", BIG_ID, nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["signature_id"], ["signatures.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("signature_id", "environment"),
    )
    op.create_table(
        "signature_hours",
        sa.Column("signature_id", BIG_ID, nullable=False),
        sa.Column("hour", detector.store.types.UTCDateTime(), nullable=False),
        sa.Column("release", sa.String(length=250), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["signature_id"], ["signatures.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("signature_id", "hour", "release", "environment"),
    )
    op.create_table(
        "signature_user_hours",
        sa.Column("signature_id", BIG_ID, nullable=False),
        sa.Column("hour", detector.store.types.UTCDateTime(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["signature_id"], ["signatures.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("signature_id", "hour"),
    )
    op.create_index("ix_signatures_project_id", "signatures", ["project_id", "id"], unique=False)
    op.create_index("ix_sigmin_signature_minute", "signature_minutes", ["signature_id", "minute"], unique=False)

    # Fill from what is stored. Minutes are stored as ISO strings on SQLite and timestamps on
    # PostgreSQL; both order correctly under min/max.
    identity = "coalesce(user_key, session_key, event_id)"
    op.execute(
        "INSERT INTO signature_release_users (signature_id, release, environment, identity, project_id, last_minute) "
        f"SELECT signature_id, release, environment, {identity}, min(project_id), max(minute) FROM events "
        f"GROUP BY signature_id, release, environment, {identity}"
    )
    op.execute(
        "INSERT INTO signature_users (signature_id, identity, project_id, last_minute) "
        "SELECT signature_id, identity, min(project_id), max(last_minute) FROM signature_release_users "
        "GROUP BY signature_id, identity"
    )
    op.execute(
        "INSERT INTO signature_releases "
        "(signature_id, release, environment, project_id, events, users, first_seen, last_seen) "
        "SELECT signature_id, release, environment, min(project_id), sum(events), 0, min(minute), max(minute) "
        "FROM signature_minutes GROUP BY signature_id, release, environment"
    )
    op.execute(
        "UPDATE signature_releases SET users = (SELECT count(*) FROM signature_release_users u "
        "WHERE u.signature_id = signature_releases.signature_id AND u.release = signature_releases.release "
        "AND u.environment = signature_releases.environment)"
    )
    # The hour of a stored minute: naive UTC timestamps on PostgreSQL, 'YYYY-MM-DD HH:MM:SS.ffffff' on SQLite.
    if op.get_bind().dialect.name == "postgresql":
        minute_hour, last_hour = "date_trunc('hour', minute)", "date_trunc('hour', last_minute)"
    else:
        minute_hour = "substr(minute, 1, 13) || ':00:00.000000'"
        last_hour = "substr(last_minute, 1, 13) || ':00:00.000000'"
    op.execute(
        "INSERT INTO signature_hours (signature_id, hour, release, environment, project_id, events) "
        f"SELECT signature_id, {minute_hour}, release, environment, min(project_id), sum(events) "
        f"FROM signature_minutes GROUP BY signature_id, {minute_hour}, release, environment"
    )
    op.execute(
        "INSERT INTO signature_user_hours (signature_id, hour, project_id, users) "
        f"SELECT signature_id, {last_hour}, min(project_id), count(*) FROM signature_users "
        f"GROUP BY signature_id, {last_hour}"
    )
    op.execute(
        "INSERT INTO signature_environments (signature_id, environment, project_id, events, users) "
        "SELECT r.signature_id, r.environment, min(r.project_id), sum(r.events), "
        "(SELECT count(DISTINCT u.identity) FROM signature_release_users u "
        "WHERE u.signature_id = r.signature_id AND u.environment = r.environment) "
        "FROM signature_releases r GROUP BY r.signature_id, r.environment"
    )
    op.execute(
        "UPDATE signatures SET "
        "events = coalesce((SELECT sum(r.events) FROM signature_releases r WHERE r.signature_id = signatures.id), 0), "
        "users = (SELECT count(*) FROM signature_users u WHERE u.signature_id = signatures.id)"
    )


def downgrade() -> None:
    op.drop_index("ix_sigmin_signature_minute", table_name="signature_minutes")
    op.drop_index("ix_signatures_project_id", table_name="signatures")
    op.drop_table("signature_user_hours")
    op.drop_table("signature_hours")
    op.drop_table("signature_environments")
    op.drop_table("signature_release_users")
    op.drop_index("ix_signature_users_recent", table_name="signature_users")
    op.drop_table("signature_users")
    op.drop_table("signature_releases")
    with op.batch_alter_table("signatures", schema=None) as batch_op:
        batch_op.drop_column("users")
        batch_op.drop_column("events")
