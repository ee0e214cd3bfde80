"""Intake refuses, with 400 naming the field, what the database cannot store (issue 18, item 1): such
items were acknowledged, then failed the digest on PostgreSQL and were dropped."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.intake.digest import digest_all
from detector.store.models import Event, Project, RawItem, SessionState

STARTED = "2026-12-03T10:00:00Z"


def envelope(item_type: str, payload: dict[str, Any]) -> bytes:
    return b"\n".join([b"{}", json.dumps({"type": item_type}).encode(), json.dumps(payload).encode()])


def event(**extra: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "release": "web@1.0.0", "message": "boom", **extra}


def session(**extra: Any) -> dict[str, Any]:
    return {"sid": uuid.uuid4().hex, "status": "exited", "started": STARTED, "attrs": {"release": "web@1.0.0"}, **extra}


REFUSED: dict[str, tuple[str, dict[str, Any], str]] = {
    "NUL in release": ("event", event(release="web@1\x00"), "release contains a NUL character"),
    "NUL in environment": ("event", event(environment="prod\x00"), "environment contains a NUL character"),
    "NUL in user": ("event", event(user={"id": "u\x001"}), "user.id contains a NUL character"),
    "NUL in a tag": ("event", event(tags={"page": "a\x00"}), "tags.page contains a NUL character"),
    "NUL in a tag key": ("event", event(tags={"pa\x00ge": "a"}), "(a key) contains a NUL character"),
    "NUL in an exception value": (
        "event",
        event(exception={"values": [{"type": "E", "value": "x\x00"}]}),
        "exception.values[0].value contains a NUL character",
    ),
    "release over 250": ("event", event(release="r" * 251), "release is 251 characters long, over the limit of 250"),
    "environment over 64": ("event", event(environment="e" * 65), "environment is 65 characters long"),
    "user id over 128": ("event", event(user={"id": "u" * 129}), "user.id is 129 characters long"),
    "trace id over 64": (
        "event",
        event(contexts={"trace": {"trace_id": "t" * 65}}),
        "contexts.trace.trace_id is 65 characters long",
    ),
    "session errors past 32 bits": ("session", session(errors=2**31), "errors is 2147483648, over the largest"),
    "session errors past 64 bits": ("session", session(errors=2**70), "errors is 1180591620717411303424"),
    "session duration past 32 bits": ("session", session(duration=2**31), "duration must be a finite number"),
    "session duration too large for a float": ("session", session(duration=10**400), "duration must be a finite"),
    "NUL in a session release": (
        "session",
        session(attrs={"release": "web\x00"}),
        "attrs.release contains a NUL character",
    ),
    "lone surrogate in a session release": (
        "session",
        session(attrs={"release": "web\ud800"}),
        "attrs.release contains a lone UTF-16 surrogate",
    ),
    "session release over 250": ("session", session(attrs={"release": "r" * 251}), "attrs.release is 251"),
    "session id over 64": ("session", session(sid="s" * 65), "sid is 65 characters long"),
    "aggregate count past 32 bits": (
        "sessions",
        {"attrs": {"release": "web@1"}, "aggregates": [{"started": STARTED, "exited": 2**32}]},
        "aggregates[0].exited is 4294967296, over the largest storable count",
    ),
}


def raw_count(factory: sessionmaker[Session]) -> int:
    with factory() as db:
        return db.scalar(select(func.count()).select_from(RawItem)) or 0


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_what_the_database_cannot_store_is_refused_with_the_field_named(
    client: TestClient, project: Project, factory: sessionmaker[Session], case: str
) -> None:
    item_type, payload, reason = REFUSED[case]
    url = f"/api/{project.id}/envelope/?sentry_key={project.public_key}"
    response = client.post(url, content=envelope(item_type, payload))
    assert response.status_code == 400, response.text
    assert reason in response.json()["detail"]
    assert raw_count(factory) == 0, "a refused item is not queued"


def test_the_same_limits_on_the_store_endpoint(client: TestClient, project: Project) -> None:
    url = f"/api/{project.id}/store/?sentry_key={project.public_key}"
    response = client.post(url, content=json.dumps(event(release="web\x00")))
    assert response.status_code == 400
    assert "release contains a NUL character" in response.json()["detail"]


def test_values_at_the_limits_are_accepted_and_digested(
    client: TestClient, project: Project, factory: sessionmaker[Session]
) -> None:
    url = f"/api/{project.id}/envelope/?sentry_key={project.public_key}"
    at_limits = event(release="r" * 250, environment="e" * 64, user={"id": "u" * 128})
    # an escaped backslash followed by u0000 is six plain characters, not a NUL
    literal = event(message="C:\\u0000 is not a NUL")
    sid = "s" * 64
    for item_type, payload in [
        ("event", at_limits),
        ("event", literal),
        ("session", session(sid=sid, errors=2**31 - 1, duration=2**31 - 1)),
    ]:
        response = client.post(url, content=envelope(item_type, payload))
        assert response.status_code == 200, response.text
    stats = digest_all(factory)
    assert (stats.events, stats.sessions, stats.failed) == (2, 1, 0)
    with factory() as db:
        assert db.scalar(select(Event.release).where(Event.event_id == at_limits["event_id"])) == "r" * 250
        assert db.scalar(select(SessionState.errors).where(SessionState.sid == sid)) == 2**31 - 1
