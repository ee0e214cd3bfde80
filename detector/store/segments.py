"""Read queries of the browser segments: sessions per segment minute, and a signature's affected sessions
per segment, counted exactly from the stored events (the digest keeps no per-segment signature counts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from detector.store.models import Event, SessionSegmentMinute

SEGMENT_SESSION_COLUMNS = ("release", "environment", "segment", "minute", "started", "errored")
SEGMENT_SIGNATURE_COLUMNS = (
    "signature_id",
    "release",
    "environment",
    "segment",
    "minute",
    "events",
    "users",
    "sessions",
)

_USER = func.coalesce(Event.user_key, Event.session_key, Event.event_id)
_SESSION = func.coalesce(Event.session_key, Event.user_key, Event.event_id)
_CHUNK = 500


def segment_session_rows(session: Session, *, project_id: int, start: datetime, end: datetime) -> list[Any]:
    """Sessions started (and errored) per (release, environment, segment, minute) in [start, end]."""
    table = SessionSegmentMinute
    return list(
        session.execute(
            select(table.release, table.environment, table.segment, table.minute, table.started, table.errored).where(
                table.project_id == project_id, table.minute >= start, table.minute <= end
            )
        ).all()
    )


def signature_segment_rows(
    session: Session,
    *,
    project_id: int,
    signature_ids: Sequence[int],
    environments: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[tuple[Any, ...]]:
    """Per (signature, release, environment, browser segment, minute) in [start, end], for the given
    signatures only: the events, and the distinct users and sessions (identities as `SignatureMinute`
    counts them) first affected in that minute within [start, end], so that their sums over minutes are
    exact distinct counts (one user's loop over many minutes counts once).

    Events without a browser are left out (their sessions have no segment either). Reads the events of
    those signatures in the window through the (signature_id, minute) identity indexes."""
    ids = sorted({int(s) for s in signature_ids})
    if not ids or not environments:
        return []
    totals: dict[tuple[Any, ...], list[int]] = {}
    for offset in range(0, len(ids), _CHUNK):
        chunk = ids[offset : offset + _CHUNK]
        where = (
            Event.project_id == project_id,
            Event.signature_id.in_(chunk),
            Event.environment.in_(sorted(set(environments))),
            Event.minute >= start,
            Event.minute <= end,
            Event.browser.is_not(None),
        )
        keys = (Event.signature_id, Event.release, Event.environment, Event.browser)
        for *key, minute, events in session.execute(
            select(*keys, Event.minute, func.count()).where(*where).group_by(*keys, Event.minute)
        ):
            totals.setdefault((*key, minute), [0, 0, 0])[0] = int(events)
        for position, identity in ((1, _USER), (2, _SESSION)):
            first = (
                select(*keys, func.min(Event.minute).label("first_minute")).where(*where).group_by(*keys, identity)
            ).subquery()
            columns = (first.c.signature_id, first.c.release, first.c.environment, first.c.browser)
            for *key, minute, count in session.execute(
                select(*columns, first.c.first_minute, func.count()).group_by(*columns, first.c.first_minute)
            ):
                totals.setdefault((*key, minute), [0, 0, 0])[position] = int(count)
    return [(*key, *values) for key, values in totals.items()]
