"""Sessions per browser segment: the digest counts real @sentry/browser session updates per (release,
environment, browser family and major version, minute), named as events' `browser` is."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from detector.intake.digest import digest_all
from detector.intake.envelope import parse_envelope
from detector.store.db import transaction
from detector.store.models import Event, Project, SessionMinute, SessionSegmentMinute, SessionState
from detector.store.queue import enqueue_items

SAFARI_14 = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/14.1.2 Safari/605.1.15"
)


def enqueue(factory: sessionmaker[Session], project: Project, items: list[tuple[str, bytes]]) -> None:
    rows = [
        {
            "project_id": project.id,
            "item_type": kind,
            "event_id": None,
            "received_at": datetime.now(UTC),
            "payload": payload,
        }
        for kind, payload in items
    ]
    with transaction(factory) as session:
        enqueue_items(session, rows)


def real_items(fixtures_dir: Path, *names: str) -> list[tuple[str, bytes]]:
    items = []
    for name in names:
        envelope = parse_envelope((fixtures_dir / "real-clients" / f"{name}.envelope").read_bytes())
        items.extend((item.type, item.payload) for item in envelope.items)
    return items


def segment_rows(factory: sessionmaker[Session]) -> list[tuple[str, str, datetime, str, int, int]]:
    with factory() as session:
        rows = session.scalars(select(SessionSegmentMinute).order_by(SessionSegmentMinute.segment)).all()
        return [(r.release, r.environment, r.minute, r.segment, r.started, r.errored) for r in rows]


def session_update(
    sid: str, started: str, *, user_agent: str | None, status: str = "ok", errors: int = 0, release: str = "web@1.3.0"
) -> tuple[str, bytes]:
    attrs: dict[str, Any] = {"release": release, "environment": "production"}
    if user_agent is not None:
        attrs["user_agent"] = user_agent
    payload = {
        "sid": sid,
        "init": status == "ok",
        "started": started,
        "timestamp": started,
        "status": status,
        "errors": errors,
        "attrs": attrs,
    }
    return "session", json.dumps(payload).encode()


def test_real_browser_sessions_are_counted_in_their_segment(
    factory: sessionmaker[Session], project: Project, fixtures_dir: Path
) -> None:
    """The fixture's session (start, errored update, unhandled end) and its events, all HeadlessChrome 156."""
    enqueue(
        factory,
        project,
        real_items(
            fixtures_dir,
            "browser-01-session",
            "browser-02-session",
            "browser-03-event",
            "browser-04-session",
            "browser-05-event",
        ),
    )
    digest_all(factory)
    minute = datetime(2026, 11, 27, 15, 5, tzinfo=UTC)
    assert segment_rows(factory) == [("web@1.2.0", "production", minute, "Chrome 156", 1, 1)]
    with factory() as session:
        totals = session.scalars(select(SessionMinute)).all()
        assert [(m.started, m.errored) for m in totals] == [(1, 1)]
        # events and sessions of one browser name the same segment
        assert set(session.scalars(select(Event.browser))) == {"Chrome 156"}


def test_segments_split_a_minute_and_sessions_without_user_agent_count_only_in_totals(
    factory: sessionmaker[Session], project: Project
) -> None:
    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/130.0.0.0 Safari/537.36"
    )
    enqueue(
        factory,
        project,
        [
            session_update("a" * 32, "2026-12-01T10:00:05Z", user_agent=SAFARI_14),
            session_update("b" * 32, "2026-12-01T10:00:15Z", user_agent=SAFARI_14),
            session_update("c" * 32, "2026-12-01T10:00:25Z", user_agent=chrome),
            session_update("d" * 32, "2026-12-01T10:00:35Z", user_agent=None),
        ],
    )
    digest_all(factory)
    # a later batch: one Safari session ends errored (its first update's user agent is kept)
    enqueue(
        factory,
        project,
        [session_update("b" * 32, "2026-12-01T10:00:15Z", user_agent=None, status="errored", errors=1)],
    )
    digest_all(factory)
    minute = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert segment_rows(factory) == [
        ("web@1.3.0", "production", minute, "Chrome 130", 1, 0),
        ("web@1.3.0", "production", minute, "Safari 14", 2, 1),
    ]
    with factory() as session:
        (total,) = session.scalars(select(SessionMinute)).all()
        assert (total.started, total.errored) == (4, 1)


def test_a_session_whose_start_moves_leaves_its_old_minute_segment(
    factory: sessionmaker[Session], project: Project
) -> None:
    enqueue(factory, project, [session_update("e" * 32, "2026-12-01T10:01:05Z", user_agent=SAFARI_14)])
    digest_all(factory)
    # an update that says the session started a minute earlier (clock skew of its first update)
    enqueue(factory, project, [session_update("e" * 32, "2026-12-01T10:00:55Z", user_agent=SAFARI_14, status="exited")])
    digest_all(factory)
    assert segment_rows(factory) == [
        ("web@1.3.0", "production", datetime(2026, 12, 1, 10, 0, tzinfo=UTC), "Safari 14", 1, 0)
    ]
    with factory() as session:
        assert session.scalars(select(SessionState.segment)).all() == ["Safari 14"]
