"""events: identity indexes per (signature, minute), replacing the plain (signature, minute) index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 17:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

USER = "(coalesce(user_key, session_key, event_id))"
SESSION = "(coalesce(session_key, user_key, event_id))"


def upgrade() -> None:
    op.create_index("ix_events_bucket_user", "events", ["signature_id", "minute", sa.text(USER)])
    op.create_index("ix_events_bucket_session", "events", ["signature_id", "minute", sa.text(SESSION)])
    op.drop_index("ix_events_sig_minute", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_sig_minute", "events", ["signature_id", "minute"])
    op.drop_index("ix_events_bucket_session", table_name="events")
    op.drop_index("ix_events_bucket_user", table_name="events")
