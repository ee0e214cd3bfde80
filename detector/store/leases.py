"""Named worker leases: which periodic job runs where, and requests to run one soon."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from detector.store.dialect import upsert_insert
from detector.store.models import WorkerLease


def detection_lease_name(project_id: int) -> str:
    return f"detect:{project_id}"


def request_detection(session: Session, project_id: int, now: datetime | None = None) -> None:
    """Ask for a detection pass of `project_id` as soon as a worker is free (e.g. a deploy was recorded)."""
    now = now or datetime.now(UTC)
    stmt = upsert_insert(session, WorkerLease).values(name=detection_lease_name(project_id), requested_at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"requested_at": now}))
