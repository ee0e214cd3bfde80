"""dead letters: intake items the digest failed on repeatedly, kept with their error instead of dropped

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 19:00:00

Items already left in the queue after their last attempt (`attempts >= 5`, never claimed again) are moved
here, so nothing that was acknowledged stays out of sight.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import detector.store.types
from detector.store.db import QUEUE_SCHEMA

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_MAX_ATTEMPTS = 5  # queue.MAX_ATTEMPTS when this revision was written


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("raw_item_id", sa.BigInteger(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_type", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=True),
        sa.Column("received_at", detector.store.types.UTCDateTime(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("failed_at", detector.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dead_letters_project_id", "dead_letters", ["project_id"], unique=False)
    bind = op.get_bind()
    moved = (
        "INSERT INTO dead_letters (raw_item_id, project_id, item_type, event_id, received_at, payload, attempts, "
        "error, failed_at) SELECT id, project_id, item_type, event_id, received_at, payload, attempts, "
        f"coalesce(last_error, ''), received_at FROM raw_items WHERE attempts >= {_MAX_ATTEMPTS}"
    )
    if bind.dialect.name == "sqlite":
        # The queue's file is attached on every connection `make_engine` makes: the items are marked
        # digested (a mark is never claimed again; the next batch deletes the item from the queue's file).
        attached = {row[1] for row in bind.exec_driver_sql("PRAGMA database_list")}
        if QUEUE_SCHEMA not in attached:
            raise RuntimeError(
                f"the queue's file is not attached as {QUEUE_SCHEMA!r}: run this migration with `detector db upgrade`"
            )
        op.execute(moved)
        op.execute(
            f"INSERT OR IGNORE INTO main.queue_digested (id) "
            f"SELECT id FROM {QUEUE_SCHEMA}.raw_items WHERE attempts >= {_MAX_ATTEMPTS}"
        )
        return
    op.execute(moved)
    op.execute(f"DELETE FROM raw_items WHERE attempts >= {_MAX_ATTEMPTS}")


def downgrade() -> None:
    op.drop_index("ix_dead_letters_project_id", table_name="dead_letters")
    op.drop_table("dead_letters")
