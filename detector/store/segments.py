"""Read queries of the browser segments: sessions per segment minute, and a signature's affected sessions
per segment, counted exactly from the stored events (the digest keeps no per-segment signature counts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
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

    Events without a browser are left out (their sessions have no segment either). One read of those
    signatures' events in the window (through the (signature_id, minute) identity indexes); the
    first-affected minutes are found in memory, which is cheaper than three grouped queries."""
    ids = sorted({int(s) for s in signature_ids})
    if not ids or not environments:
        return []
    connection = session.connection()
    found: list[Any] = []
    for offset in range(0, len(ids), _CHUNK):
        chunk = ids[offset : offset + _CHUNK]
        found.extend(
            connection.execute(
                select(
                    Event.signature_id, Event.release, Event.environment, Event.browser, Event.minute, _USER, _SESSION
                ).where(
                    Event.project_id == project_id,
                    Event.signature_id.in_(chunk),
                    Event.environment.in_(sorted(set(environments))),
                    Event.minute >= start,
                    Event.minute <= end,
                    Event.browser.is_not(None),
                )
            ).all()
        )
    if not found:
        return []
    keys = ["signature_id", "release", "environment", "segment", "minute"]
    events = pd.DataFrame(found, columns=[*keys, "user", "session"])
    # datetime64 and categories, not Python objects: grouping 10^5 rows of objects takes seconds
    events["minute"] = pd.to_datetime(events["minute"], utc=True)
    for column in ("release", "environment", "segment", "user", "session"):
        events[column] = events[column].astype("category")
    events = events.sort_values("minute", kind="stable")
    totals = events.groupby(keys, sort=False, observed=True).size().rename("events").to_frame()
    for identity, column in (("user", "users"), ("session", "sessions")):
        first = events.drop_duplicates([*keys[:4], identity])  # sorted by minute: each identity's first minute
        per_minute = first.groupby(keys, sort=False, observed=True).size()
        totals[column] = per_minute.reindex(totals.index, fill_value=0)
    return [
        (sig, release, env, segment, minute.to_pydatetime(), int(e), int(u), int(n))
        for (sig, release, env, segment, minute), e, u, n in totals.itertuples(name=None)
    ]
