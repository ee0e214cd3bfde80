"""Named worker leases: which periodic job runs where, requests to run one soon, and heartbeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, func, or_, select
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


# Heartbeats are leases too: a worker holds `worker:<owner>` until a little past its next beat, so "alive"
# is one comparison wherever it is asked (any API replica, any database), and a killed worker's row simply
# runs out. `health:<owner>` rows are what `/healthz` writes to prove the database takes writes.
WORKER_PREFIX = "worker:"
HEALTH_PREFIX = "health:"
FORGET_AFTER = timedelta(days=1)
"""Rows of workers (and API processes) silent this long are deleted by the next beat."""


def beat(session: Session, name: str, *, now: datetime, alive_for: float) -> None:
    """Record that `name` is alive now and until `alive_for` seconds from now (an upsert)."""
    until = now + timedelta(seconds=alive_for)
    stmt = upsert_insert(session, WorkerLease).values(name=name, owner=name, last_run_at=now, lease_until=until)
    session.execute(
        stmt.on_conflict_do_update(index_elements=["name"], set_={"last_run_at": now, "lease_until": until})
    )


def beat_worker(session: Session, owner: str, *, now: datetime, alive_for: float) -> None:
    """A worker's heartbeat; rows of workers long gone are deleted on the way."""
    beat(session, WORKER_PREFIX + owner, now=now, alive_for=alive_for)
    session.execute(
        delete(WorkerLease).where(
            or_(WorkerLease.name.startswith(WORKER_PREFIX), WorkerLease.name.startswith(HEALTH_PREFIX)),
            WorkerLease.lease_until < now - FORGET_AFTER,
        )
    )


def forget_worker(session: Session, owner: str) -> None:
    """A worker that stops when asked leaves no heartbeat behind: it is not missing, it was stopped."""
    session.execute(delete(WorkerLease).where(WorkerLease.name == WORKER_PREFIX + owner))


class WorkerLiveness(NamedTuple):
    alive: int
    """Workers whose heartbeat has not run out."""
    last_beat: datetime | None
    """The latest heartbeat of any worker (None: no worker has beaten, or all stopped when asked)."""


def worker_liveness(session: Session, *, now: datetime) -> WorkerLiveness:
    workers = WorkerLease.name.startswith(WORKER_PREFIX)
    alive = session.scalar(select(func.count()).select_from(WorkerLease).where(workers, WorkerLease.lease_until >= now))
    last = session.scalar(select(func.max(WorkerLease.last_run_at)).where(workers))
    return WorkerLiveness(alive or 0, last)
