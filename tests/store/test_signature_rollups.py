"""The totals the signature list reads (kept by the digest) equal what the raw events say.

Each case digests real raw items through `digest_all`, in several batches, then compares
`list_signatures` against counts taken straight from the `events` table for the same scope.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.intake.digest import digest_all
from detector.store.db import transaction, upgrade
from detector.store.models import Event, Project, Signature, SignatureRelease, SignatureReleaseUser, SignatureUser
from detector.store.queue import enqueue_items
from detector.store.signatures import list_signatures, user_identity

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def raw_event(
    project: Project,
    *,
    value: str,
    release: str,
    environment: str,
    at: datetime,
    user: str | None,
    event_id: str | None = None,
) -> dict[str, object]:
    event_id = event_id or uuid.uuid4().hex
    payload: dict[str, Any] = {
        "event_id": event_id,
        "timestamp": at.timestamp(),
        "platform": "javascript",
        "release": release,
        "environment": environment,
        "exception": {"values": [{"type": "TypeError", "value": value}]},
    }
    if user:
        payload["user"] = {"id": user}
    return {
        "project_id": project.id,
        "item_type": "event",
        "event_id": event_id,
        "received_at": datetime.now(UTC),
        "payload": json.dumps(payload).encode(),
    }


def digest(factory: sessionmaker[Session], rows: list[dict[str, object]], batch_size: int = 37) -> None:
    with transaction(factory) as session:
        enqueue_items(session, rows)
    digest_all(factory, batch_size=batch_size)


def mixed_traffic(project: Project, rng: random.Random, n: int) -> list[dict[str, object]]:
    """Three errors over three releases, two environments and 25 users (some anonymous), over 3 hours."""
    rows = []
    for _ in range(n):
        rows.append(
            raw_event(
                project,
                value=rng.choice(["a is undefined", "b is undefined", "c is undefined"]),
                release=rng.choice(["web@1", "web@2", "web@3"]),
                environment=rng.choice(["production", "production", "staging"]),
                at=START + timedelta(minutes=rng.randrange(180), seconds=rng.randrange(60)),
                user=rng.choice([None, *[f"u{k}" for k in range(25)]]),
            )
        )
    return rows


def from_events(
    session: Session, sig_id: int, *, release: str | None = None, environment: str | None = None, since: Any = None
) -> tuple[int, int, list[str]]:
    """(events, distinct users, releases) of one signature in a scope, counted over raw events."""
    query = select(func.count(), func.count(func.distinct(user_identity()))).where(Event.signature_id == sig_id)
    rel_query = select(Event.release).where(Event.signature_id == sig_id).distinct()
    for column, value in ((Event.release, release), (Event.environment, environment)):
        if value:
            query, rel_query = query.where(column == value), rel_query.where(column == value)
    if since:  # counted from the minute `since` falls in
        minute = since.replace(second=0, microsecond=0)
        query, rel_query = query.where(Event.minute >= minute), rel_query.where(Event.minute >= minute)
    n, users = session.execute(query).one()
    return int(n), int(users), sorted(session.scalars(rel_query))


SCOPES: list[dict[str, Any]] = [
    {},
    {"release": "web@2"},
    {"environment": "staging"},
    {"release": "web@1", "environment": "production"},
    {"since": START + timedelta(minutes=150)},
    {"since": START + timedelta(minutes=120)},  # on the hour: whole hours only
    {"since": START + timedelta(minutes=61, seconds=30)},
    {"since": START + timedelta(minutes=10)},  # hours users have moved on from
    {"since": START + timedelta(minutes=100), "environment": "production"},
    {"since": START + timedelta(minutes=90), "release": "web@3"},
]


def assert_list_matches_events(factory: sessionmaker[Session], project: Project) -> None:
    with factory() as session:
        for scope in SCOPES:
            listed = list_signatures(session, project_id=project.id, **scope)
            expected = {}
            for sig_id in session.scalars(select(Signature.id).where(Signature.project_id == project.id)):
                n, users, releases = from_events(session, sig_id, **scope)
                if n:
                    expected[sig_id] = (n, users, releases)
            got = {row["id"]: (row["events"], row["users"], row["releases"]) for row in listed}
            assert got == expected, scope


def test_list_totals_equal_the_raw_events_in_every_scope(factory: sessionmaker[Session], project: Project) -> None:
    rng = random.Random(5)
    rows = mixed_traffic(project, rng, 600)
    digest(factory, rows[:300])
    digest(factory, rows[300:])  # a second round adds to totals that exist
    assert_list_matches_events(factory, project)


def test_a_retried_event_and_a_late_event_change_totals_exactly_once(
    factory: sessionmaker[Session], project: Project
) -> None:
    first = raw_event(
        project, value="x", release="web@1", environment="production", at=START + timedelta(minutes=30), user="u1"
    )
    digest(factory, [first])
    retried = dict(first, received_at=datetime.now(UTC))
    late = raw_event(project, value="x", release="web@1", environment="production", at=START, user="u2")
    same_user_later = raw_event(
        project, value="x", release="web@2", environment="production", at=START + timedelta(minutes=60), user="u1"
    )
    digest(factory, [retried, late, same_user_later])
    with factory() as session:
        (row,) = list_signatures(session, project_id=project.id)
        assert (row["events"], row["users"], row["releases"]) == (3, 2, ["web@1", "web@2"])
        (since_row,) = list_signatures(session, project_id=project.id, since=START + timedelta(minutes=45))
        assert (since_row["events"], since_row["users"]) == (1, 1)
        totals = {
            (r.release, r.events, r.users, r.first_seen, r.last_seen) for r in session.scalars(select(SignatureRelease))
        }
        assert totals == {
            ("web@1", 2, 2, START, START + timedelta(minutes=30)),
            ("web@2", 1, 1, START + timedelta(minutes=60), START + timedelta(minutes=60)),
        }
        last = {(u.identity, u.release): u.last_minute for u in session.scalars(select(SignatureReleaseUser))}
        assert last[("u1", "web@1")] == START + timedelta(minutes=30)  # the late event did not move it back
        assert last[("u2", "web@1")] == START
        anywhere = {u.identity: u.last_minute for u in session.scalars(select(SignatureUser))}
        assert anywhere == {"u1": START + timedelta(minutes=60), "u2": START}


def test_paging_through_the_list_sees_every_signature_once(factory: sessionmaker[Session], project: Project) -> None:
    rows = [
        raw_event(project, value=f"error {k} in widget", release="web@1", environment="production", at=START, user="u")
        for k in range(12)
    ]
    digest(factory, rows)
    seen: list[int] = []
    after = None
    with factory() as session:
        while True:
            page = list_signatures(session, project_id=project.id, after_id=after, limit=5)
            seen += [row["id"] for row in page[:5]]
            if len(page) <= 5:
                break
            after = page[4]["id"]
    assert len(seen) == len(set(seen)) == session.scalar(select(func.count(Signature.id)))


def test_the_migration_fills_the_totals_from_stored_events(
    database_url: str, factory: sessionmaker[Session], project: Project
) -> None:
    digest(factory, mixed_traffic(project, random.Random(9), 300))
    with factory() as session:
        before = {scope_key(s): list_signatures(session, project_id=project.id, **s) for s in SCOPES}
    factory.kw["bind"].dispose()
    from alembic import command

    from detector.store.db import alembic_config

    command.downgrade(alembic_config(database_url), "0002")
    upgrade(database_url)
    with factory() as session:
        after = {scope_key(s): list_signatures(session, project_id=project.id, **s) for s in SCOPES}
    assert after == before
    assert_list_matches_events(factory, project)


def scope_key(scope: dict[str, Any]) -> str:
    return json.dumps(scope, default=str, sort_keys=True)


def test_an_empty_project_lists_nothing(factory: sessionmaker[Session], project: Project) -> None:
    with factory() as session:
        assert list_signatures(session, project_id=project.id, release="web@1") == []
        assert list_signatures(session, project_id=project.id) == []
