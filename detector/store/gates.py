"""Exact distinct counts over a window, for the detector's evidence gates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from detector.store.models import Event

USER_IDENTITY: ColumnElement[str] = func.coalesce(Event.user_key, Event.session_key, Event.event_id)
"""Who an event happened to: the user, else the session, else the event alone (as the indexes say)."""
SESSION_IDENTITY: ColumnElement[str] = func.coalesce(Event.session_key, Event.user_key, Event.event_id)


def window_gate_met_at(
    session: Session,
    *,
    project_id: int,
    signature_id: int,
    environment: str,
    releases: Sequence[str],
    since: datetime,
    until: datetime,
    min_users: int,
    min_sessions: int,
) -> datetime | None:
    """The minute by which the signature had affected `min_users` distinct users and `min_sessions`
    distinct sessions of `releases` in [since, until] (None if it has not): the gate counts a window's
    distinct identities, so one affected session every few minutes adds up while one user's loop does not."""

    def kth_first_minute(identity: ColumnElement[str], k: int) -> datetime | None:
        if k <= 0:
            return since
        firsts = (
            select(func.min(Event.minute).label("first"))
            .where(
                Event.project_id == project_id,
                Event.signature_id == signature_id,
                Event.environment == environment,
                Event.release.in_(list(releases)),
                Event.minute >= since,
                Event.minute <= until,
            )
            .group_by(identity)
            .subquery()
        )
        return session.scalar(select(firsts.c.first).order_by(firsts.c.first).offset(k - 1).limit(1))

    users = kth_first_minute(USER_IDENTITY, min_users)
    sessions = kth_first_minute(SESSION_IDENTITY, min_sessions)
    if users is None or sessions is None:
        return None
    return max(users, sessions)
