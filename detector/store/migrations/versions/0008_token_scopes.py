"""token scopes: what each API token may do (ingest, read, deploy, admin)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:00:00

Tokens made before this revision get every scope (the column's default), so nobody who upgrades is
locked out; `detector token create --scope …` makes narrower ones.
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


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("scopes")
