"""What `/healthz` answers: whether events sent now will be stored and digested, and if not, why.

Unhealthy (503, with the reasons) when the database cannot be read or written (on SQLite: when its
disk has less than `health_min_free_disk_mb` free), when workers have
beaten before and none is alive now (`store.leases`: heartbeats are in the database, so every API
replica sees the same workers), or when the oldest item waiting for digest is older than
`health_max_queue_age_seconds` (no worker, a stuck one, or one far behind). Dead letters are counted
but do not make it unhealthy: the pipeline works, one item did not (alert on `detector_dead_letters`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.store.db import database_error_reason, sqlite_free_bytes, transaction
from detector.store.dead_letters import count_dead_letters
from detector.store.leases import HEALTH_PREFIX, beat, worker_liveness
from detector.store.queue import oldest_received, queue_depth


@dataclass(frozen=True)
class Health:
    reasons: list[str] = field(default_factory=list)
    queue_depth: int | None = None
    oldest_queued_seconds: float | None = None
    dead_letters: int | None = None
    workers_alive: int | None = None
    last_worker_heartbeat_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, Any]:
        facts = {name: value for name, value in asdict(self).items() if name != "reasons"}
        if self.ok:
            return {"status": "ok", **facts}
        return {"status": "unavailable", "detail": "; ".join(self.reasons), "reasons": self.reasons, **facts}


def unhealthy_reasons(
    *,
    oldest_queued_seconds: float | None,
    max_queue_age_seconds: float,
    workers_alive: int,
    last_worker_heartbeat_seconds: float | None,
    free_disk_bytes: int | None = None,
    min_free_disk_mb: float = 0.0,
) -> list[str]:
    """The reasons a readable, writable database's pipeline is unhealthy (none: healthy)."""
    reasons = []
    if free_disk_bytes is not None and free_disk_bytes < min_free_disk_mb * 1024 * 1024:
        reasons.append(
            f"the disk holding the database has {free_disk_bytes / 1024 / 1024:.1f} MB free, under the "
            f"{min_free_disk_mb:g} MB of DETECTOR_HEALTH_MIN_FREE_DISK_MB"
        )
    if workers_alive == 0 and last_worker_heartbeat_seconds is not None:
        reasons.append(
            f"no worker is alive: the last heartbeat was {last_worker_heartbeat_seconds:.0f} s ago, "
            "so nothing digests the queue"
        )
    if oldest_queued_seconds is not None and oldest_queued_seconds > max_queue_age_seconds:
        reasons.append(
            f"the oldest queued item is {oldest_queued_seconds:.0f} s old, over the "
            f"{max_queue_age_seconds:g} s of DETECTOR_HEALTH_MAX_QUEUE_AGE_SECONDS"
        )
    return reasons


def _seconds_since(then: datetime | None, now: datetime) -> float | None:
    return None if then is None else round(max(0.0, (now - then).total_seconds()), 3)


def check_health(
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    intake_failure: str | None = None,
) -> Health:
    """Read the queue, the dead letters and the workers' heartbeats, and prove the database takes a write
    (this process's `health:` row, committed). `intake_failure`: why this process's last intake commit
    failed, when none has succeeded since (`GroupCommitWriter.last_failure`), which this small write
    cannot show (on SQLite the queue is another file; an update in place needs no new page)."""
    now = now or datetime.now(UTC)
    intake_reasons = [f"intake cannot write the queue: {intake_failure}"] if intake_failure else []
    try:
        with factory() as session:
            depth = queue_depth(session)
            oldest = _seconds_since(oldest_received(session), now)
            dead = count_dead_letters(session)
            liveness = worker_liveness(session, now=now)
    except Exception as exc:  # a health check reports, it does not raise
        return Health(reasons=[f"the database cannot be read: {_short(exc)}", *intake_reasons])
    facts = {
        "queue_depth": depth,
        "oldest_queued_seconds": oldest,
        "dead_letters": dead,
        "workers_alive": liveness.alive,
        "last_worker_heartbeat_seconds": _seconds_since(liveness.last_beat, now),
    }
    reasons = unhealthy_reasons(
        oldest_queued_seconds=oldest,
        max_queue_age_seconds=settings.health_max_queue_age_seconds,
        workers_alive=liveness.alive,
        last_worker_heartbeat_seconds=facts["last_worker_heartbeat_seconds"],  # type: ignore[arg-type]
        free_disk_bytes=sqlite_free_bytes(factory.kw["bind"]),
        min_free_disk_mb=settings.health_min_free_disk_mb,
    )
    write_reasons = []
    try:
        with transaction(factory) as session:
            beat(session, f"{HEALTH_PREFIX}{socket.gethostname()}:{os.getpid()}", now=now, alive_for=0.0)
    except Exception as exc:  # as above
        write_reasons.append(f"the database cannot be written: {_short(exc)}")
    reasons = [*write_reasons, *intake_reasons, *reasons]
    return Health(reasons=reasons, **facts)  # type: ignore[arg-type]


def _short(exc: Exception) -> str:
    return database_error_reason(exc)
