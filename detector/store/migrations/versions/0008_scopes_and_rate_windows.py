"""token scopes (what each API token may do: ingest, read, deploy, admin), and rate windows shared by
every API process

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:00:00

Tokens made before this revision get every scope (the column's default), so nobody who upgrades is
locked out; `detector token create --scope …` makes narrower ones.

`rate_windows` counts each project's events per minute for the rate limit, so N API processes allow the
limit once, not N times. PostgreSQL only: on SQLite the table lives in the queue's own file, created on
connect (`db.make_engine`), as `raw_items` does since 0004.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ALL_SCOPES = "ingest read deploy admin"  # scopes.ALL_SCOPES_TEXT when this revision was written


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("scopes", sa.String(length=64), nullable=False, server_default=_ALL_SCOPES))
    if op.get_bind().dialect.name != "sqlite":
        op.create_table(
            "rate_windows",
            sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("minute", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("used", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("project_id", "minute"),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_table("rate_windows")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("scopes")
