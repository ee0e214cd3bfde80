"""raw queue in a file of its own on SQLite; marks of digested items

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 00:10:00

On SQLite the raw intake queue moves to the file `detector.store.db` attaches beside the database
(`detector.queue.db` for `detector.db`): intake's commits then never wait for the write lock the digest
holds on the main file. Queued items are moved, in order; `raw_items` in the main file is dropped, so
the unqualified name finds the queue's table. `queue_digested` (both databases; used on SQLite only)
records items digested but not yet deleted from the queue's file.

The move is one transaction over two files, which SQLite commits file by file: stop intake while this
runs (as for any migration).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import detector.store.types
from detector.store.db import QUEUE_SCHEMA

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_COLUMNS = "project_id, item_type, event_id, received_at, payload, lease_owner, lease_until, attempts, last_error"


def _check_queue_attached(bind: sa.Connection) -> None:
    attached = {row[1] for row in bind.exec_driver_sql("PRAGMA database_list")}
    if QUEUE_SCHEMA not in attached:
        raise RuntimeError(
            f"the queue's file is not attached as {QUEUE_SCHEMA!r}: run this migration with `detector db upgrade`"
        )


def upgrade() -> None:
    op.create_table(
        "queue_digested",
        sa.Column("id", BIG_ID, autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    _check_queue_attached(bind)
    # New ids, in the old order: the queue's file may already hold items (after a downgrade and upgrade).
    bind.exec_driver_sql(
        f"INSERT INTO {QUEUE_SCHEMA}.raw_items ({_COLUMNS}) SELECT {_COLUMNS} FROM main.raw_items ORDER BY id"
    )
    bind.exec_driver_sql("DROP TABLE main.raw_items")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _check_queue_attached(bind)
        op.create_table(
            "raw_items",
            sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
            sa.Column("project_id", sa.Integer(), nullable=False),
            sa.Column("item_type", sa.String(length=16), nullable=False),
            sa.Column("event_id", sa.String(length=32), nullable=True),
            sa.Column("received_at", detector.store.types.UTCDateTime(), nullable=False),
            sa.Column("payload", sa.LargeBinary(), nullable=False),
            sa.Column("lease_owner", sa.String(length=64), nullable=True),
            sa.Column("lease_until", detector.store.types.UTCDateTime(), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
        )
        # Items already digested (marked) are not moved back: they would be digested again.
        bind.exec_driver_sql(
            f"INSERT INTO main.raw_items ({_COLUMNS}) SELECT {_COLUMNS} FROM {QUEUE_SCHEMA}.raw_items r "
            "WHERE r.id NOT IN (SELECT id FROM main.queue_digested) ORDER BY r.id"
        )
        bind.exec_driver_sql(f"DELETE FROM {QUEUE_SCHEMA}.raw_items")
    op.drop_table("queue_digested")
