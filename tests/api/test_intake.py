"""Sentry intake as relay answers it: what is accepted, what is refused, and that refusals store nothing."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.config import Settings
from detector.intake.digest import digest_all
from detector.store.db import transaction
from detector.store.models import Event, Project, RawItem, SessionMinute


def raw_count(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(RawItem)) or 0


def envelope_url(project: Project) -> str:
    return f"/api/{project.id}/envelope/?sentry_key={project.public_key}&sentry_version=7"


def event_envelope(event: dict[str, object]) -> bytes:
    return b"\n".join(
        [
            json.dumps({"event_id": event["event_id"]}).encode(),
            b'{"type":"event"}',
            json.dumps(event).encode(),
        ]
    )


def minimal_event(event_id: str = "a" * 32, **extra: object) -> dict[str, object]:
    return {
        "event_id": event_id,
        "timestamp": 1795791930.0,
        "platform": "javascript",
        "release": "web@1.0.0",
        "exception": {"values": [{"type": "TypeError", "value": "x is undefined"}]},
        **extra,
    }


def test_real_browser_envelopes_are_accepted_and_digested(
    client: TestClient, project: Project, factory: sessionmaker[Session], fixtures_dir: Path
) -> None:
    rc = fixtures_dir / "real-clients"
    for name in sorted(rc.glob("browser-0*.envelope")):
        response = client.post(
            envelope_url(project),
            content=name.read_bytes(),
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        )
        assert response.status_code == 200, (name.name, response.text)
    event = json.loads((rc / "browser-03-event.envelope").read_bytes().split(b"\n")[2])
    body = client.post(envelope_url(project), content=(rc / "browser-03-event.envelope").read_bytes()).json()
    assert body == {"id": event["event_id"]}
    stats = digest_all(factory)
    assert stats.events == 3
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 3
        minutes = session.scalars(select(SessionMinute)).all()
        assert sum(m.started for m in minutes) == 1
        assert sum(m.errored for m in minutes) == 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", None])
def test_compressed_bodies(client: TestClient, project: Project, encoding: str | None) -> None:
    body = event_envelope(minimal_event())
    headers = {}
    if encoding == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif encoding == "deflate":
        body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
    elif encoding == "raw-deflate":
        c = zlib.compressobj(wbits=-15)
        body, headers["Content-Encoding"] = c.compress(body) + c.flush(), "deflate"
    response = client.post(envelope_url(project), content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "a" * 32}


def test_key_from_auth_header_and_dsn(client: TestClient, project: Project) -> None:
    body = event_envelope(minimal_event("b" * 32))
    auth = f"Sentry sentry_key={project.public_key}, sentry_version=7, sentry_client=test/1.0"
    assert client.post(f"/api/{project.id}/envelope/", content=body, headers={"X-Sentry-Auth": auth}).status_code == 200
    dsn_header = json.dumps({"event_id": "c" * 32, "dsn": f"http://{project.public_key}@localhost/{project.id}"})
    with_dsn = dsn_header.encode() + b"\n" + b"\n".join(event_envelope(minimal_event("c" * 32)).split(b"\n")[1:])
    assert client.post(f"/api/{project.id}/envelope/", content=with_dsn).status_code == 200


def test_store_endpoint(client: TestClient, project: Project, factory: sessionmaker[Session]) -> None:
    url = f"/api/{project.id}/store/?sentry_key={project.public_key}"
    response = client.post(url, json=minimal_event("d" * 32))
    assert response.status_code == 200
    assert response.json() == {"id": "d" * 32}
    assert digest_all(factory).events == 1


def test_other_item_types_are_accepted_and_skipped(
    client: TestClient, project: Project, factory: sessionmaker[Session]
) -> None:
    body = b"\n".join(
        [
            b"{}",
            b'{"type":"client_report"}',
            b'{"timestamp":1.0,"discarded_events":[]}',
            b'{"type":"transaction"}',
            b'{"type":"transaction","spans":[]}',
            b'{"type":"attachment","length":3}',
            b"abc",
            b'{"type":"something_new"}',
            b"{}",
        ]
    )
    response = client.post(envelope_url(project), content=body)
    assert response.status_code == 200, response.text
    assert raw_count(factory) == 0


def test_cors_preflight(client: TestClient, project: Project) -> None:
    response = client.options(
        f"/api/{project.id}/envelope/",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "http://app.example")


BAD_INPUTS = {
    "malformed envelope header": (b'{not json\n{"type":"event"}\n{}', 400),
    "item length past the end": (
        b'{}\n{"type":"event","length":999999}\n{"event_id":"' + b"e" * 32 + b'"}',
        400,
    ),
    "invalid JSON event": (b'{}\n{"type":"event"}\n{"exception": ', 400),
    "invalid UTF-8": (b'{}\n{"type":"event"}\n{"message":"\xff\xfe"}', 400),
    "event without exception or message": (b'{}\n{"type":"event"}\n{"level":"error"}', 400),
    "absurd timestamp": (
        b'{}\n{"type":"event"}\n' + json.dumps(minimal_event(timestamp=1e300)).encode(),
        400,
    ),
    "negative timestamp": (
        b'{}\n{"type":"event"}\n' + json.dumps(minimal_event(timestamp=-5)).encode(),
        400,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_nothing_is_stored(
    client: TestClient, project: Project, factory: sessionmaker[Session], case: str
) -> None:
    body, status = BAD_INPUTS[case]
    response = client.post(envelope_url(project), content=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert raw_count(factory) == 0
    good = client.post(envelope_url(project), content=event_envelope(minimal_event("f" * 32)))
    assert good.status_code == 200


def test_keys_and_projects(client: TestClient, project: Project, factory: sessionmaker[Session]) -> None:
    body = event_envelope(minimal_event())
    assert client.post(f"/api/{project.id}/envelope/", content=body).status_code == 401
    wrong = client.post(f"/api/{project.id}/envelope/?sentry_key={'0' * 32}", content=body)
    assert wrong.status_code == 403
    unknown = client.post(f"/api/999999/envelope/?sentry_key={project.public_key}", content=body)
    assert unknown.status_code == 404
    assert "999999" in unknown.json()["detail"]
    assert raw_count(factory) == 0


def test_size_limits_and_gzip_bomb(client: TestClient, project: Project, factory: sessionmaker[Session]) -> None:
    big = client.post(envelope_url(project), content=b"x" * (21 * 1024 * 1024))
    assert big.status_code == 413
    bomb = gzip.compress(b"0" * (200 * 1024 * 1024), 9)
    response = client.post(envelope_url(project), content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    huge_event = minimal_event(extra={"blob": "y" * (2 * 1024 * 1024)})
    assert client.post(envelope_url(project), content=event_envelope(huge_event)).status_code == 413
    assert raw_count(factory) == 0


def test_rate_limit_answers_429_with_sentry_headers(
    project: Project, factory: sessionmaker[Session], settings: Settings
) -> None:
    with transaction(factory) as session:
        session.get(Project, project.id).rate_limit_per_minute = 2  # type: ignore[union-attr]
    with TestClient(create_app(settings)) as client:
        _assert_rate_limited(client, project, factory)


def _assert_rate_limited(client: TestClient, project: Project, factory: sessionmaker[Session]) -> None:
    codes = [
        client.post(envelope_url(project), content=event_envelope(minimal_event(f"{i:032x}"))).status_code
        for i in range(4)
    ]
    assert codes[:2] == [200, 200]
    assert 429 in codes[2:]
    limited = client.post(envelope_url(project), content=event_envelope(minimal_event("9" * 32)))
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["X-Sentry-Rate-Limits"].split(":")[0] == limited.headers["Retry-After"]
    assert raw_count(factory) == 2


def test_retried_event_is_stored_and_counted_once(
    client: TestClient, project: Project, factory: sessionmaker[Session]
) -> None:
    body = event_envelope(minimal_event("1" * 32))
    for _ in range(3):
        assert client.post(envelope_url(project), content=body).status_code == 200
    digest_all(factory)
    assert client.post(envelope_url(project), content=body).status_code == 200
    stats = digest_all(factory)
    assert stats.duplicates == 1
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
        from detector.store.models import SignatureMinute

        assert [m.events for m in session.scalars(select(SignatureMinute))] == [1]
