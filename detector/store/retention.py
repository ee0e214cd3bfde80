"""Raw event retention: stored events past `raw_event_retention_days` go; what was counted from them stays."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from detector.store.db import transaction
from detector.store.models import Event, Project


def delete_events_before(session: Session, *, project_id: int, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` of the project's stored events whose minute is before `cutoff` (oldest first);
    per-minute counts, signatures, their releases and users, and anomalies are left as they are."""
    doomed = (
        select(Event.id)
        .where(Event.project_id == project_id, Event.minute < cutoff)
        .order_by(Event.minute)
        .limit(limit)
    )
    ids = list(session.scalars(doomed))
    if ids:
        session.execute(delete(Event).where(Event.id.in_(ids)))
    return len(ids)


def apply_event_retention(factory: sessionmaker[Session], *, cutoff: datetime, batch: int = 5000) -> int:
    """Delete every project's events before `cutoff`, `batch` rows per transaction (short write locks);
    returns how many went."""
    with factory() as session:
        project_ids = list(session.scalars(select(Project.id).order_by(Project.id)))
    deleted = 0
    for project_id in project_ids:
        while True:
            with transaction(factory) as session:
                n = delete_events_before(session, project_id=project_id, cutoff=cutoff, limit=batch)
            deleted += n
            if n < batch:
                break
    return deleted
