from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detector.intake.envelope import parse_envelope
from detector.intake.sessions import (
    InvalidSession,
    parse_session_aggregates,
    parse_session_update,
)


def session_payload(fixtures_dir: Path, name: str) -> bytes:
    envelope = parse_envelope((fixtures_dir / "real-clients" / f"{name}.envelope").read_bytes())
    (item,) = envelope.items_of_type("session")
    return item.payload


def test_real_browser_session_lifecycle(fixtures_dir: Path) -> None:
    start, errored, ended = (
        parse_session_update(session_payload(fixtures_dir, name))
        for name in ("browser-01-session", "browser-02-session", "browser-04-session")
    )
    assert start.sid == errored.sid == ended.sid == "3c46372c59264e09beecc6393375a06c"
    assert (start.init, errored.init, ended.init) == (True, False, False)
    assert start.started == datetime(2026, 11, 27, 15, 5, 30, 543000, tzinfo=UTC)
    assert ended.timestamp == datetime(2026, 11, 27, 15, 5, 30, 697000, tzinfo=UTC)
    assert (start.release, start.environment) == ("web@1.2.0", "production")
    assert start.did is None

    assert (start.status, start.errors, start.health) == ("ok", 0, "healthy")
    assert not start.is_errored and not start.is_terminal

    # The handled TypeError made the live session errored, without ending it.
    assert (errored.status, errored.errors, errored.health) == ("ok", 1, "errored")
    assert errored.is_errored and not errored.is_terminal

    # The uncaught error ended it as "unhandled": unhealthy and terminal, but not a crash.
    assert (ended.status, ended.errors, ended.health) == ("unhandled", 1, "unhandled")
    assert ended.is_errored and ended.is_terminal and not ended.is_crashed


def test_spec_session_example(fixtures_dir: Path) -> None:
    body = (fixtures_dir / "envelope-spec" / "07_empty_headers_session_implicit_eof.bin").read_bytes()
    (item,) = parse_envelope(body).items
    update = parse_session_update(item.payload)
    assert update.release == "sentry-test@1.0.0"
    assert update.status == "ok"
    assert update.sid is None
    assert update.timestamp == update.started == datetime(2020, 2, 7, 14, 16, tzinfo=UTC)


def base(**extra: Any) -> dict[str, Any]:
    return {"sid": "s1", "started": "2026-11-27T15:00:00Z", "attrs": {"release": "web@1.2.0"}, **extra}


def test_missing_timestamp_is_received_at() -> None:
    received = datetime(2026, 11, 27, 15, 1, tzinfo=UTC)
    assert parse_session_update(base(), received_at=received).timestamp == received


@pytest.mark.parametrize(
    ("status", "health"), [("crashed", "crashed"), ("abnormal", "abnormal"), ("exited", "healthy")]
)
def test_terminal_statuses(status: str, health: str) -> None:
    update = parse_session_update(base(status=status))
    assert update.is_terminal
    assert update.health == health
    assert update.is_crashed == (status == "crashed")


def test_crash_counts_at_least_one_error() -> None:
    assert parse_session_update(base(status="crashed", errors=0)).errors == 1
    assert parse_session_update(base(status="unhandled")).errors == 1
    assert parse_session_update(base(status="crashed", errors=3)).errors == 3
    assert parse_session_update(base(status="exited", errors=0)).errors == 0


def test_exited_with_errors_is_errored() -> None:
    update = parse_session_update(base(status="exited", errors=2))
    assert update.health == "errored"


def test_environment_default_and_did() -> None:
    update = parse_session_update(base(did=42, attrs={"release": "r", "environment": ""}))
    assert (update.environment, update.did) == ("production", "42")


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (base(attrs={}), "attrs.release is missing"),
        ({"started": "2026-11-27T15:00:00Z"}, "attrs is missing"),
        (base(attrs={"release": " "}), "attrs.release is missing"),
        (base(status="healthy"), "status must be one of"),
        (base(status=None), "status must be one of"),
        (base(errors=-1), "errors must be a non-negative integer"),
        (base(errors="1"), "errors must be a non-negative integer"),
        (base(started=None), "started is missing"),
        (base(started="soon"), "started is not a date"),
        (base(started="1970-01-01T00:00:00Z"), "started is before 2000-01-01"),
        (base(timestamp="2026-11-27T14:59:00Z"), "is before started"),
        (base(timestamp="nope"), "timestamp is not a date"),
    ],
)
def test_invalid_sessions(payload: Any, fragment: str) -> None:
    with pytest.raises(InvalidSession, match=fragment):
        parse_session_update(payload)


def test_session_aggregates() -> None:
    payload = {
        "aggregates": [
            {"started": "2020-02-07T14:16:00Z", "exited": 123},
            {"started": "2020-02-07T14:16:00Z", "did": "u1", "exited": 12, "errored": 3, "crashed": 1},
        ],
        "attrs": {"release": "my-project-name@1.0.0", "environment": "development"},
    }
    first, second = parse_session_aggregates(json.dumps(payload).encode())
    assert first.started == datetime(2020, 2, 7, 14, 16, tzinfo=UTC)
    assert (first.exited, first.errored, first.crashed, first.total) == (123, 0, 0, 123)
    assert (second.did, second.total, second.crashed) == ("u1", 16, 1)
    assert (second.release, second.environment) == ("my-project-name@1.0.0", "development")


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"aggregates": [], "attrs": {}}, "attrs.release is missing"),
        ({"attrs": {"release": "r"}}, "aggregates must be a list"),
        ({"aggregates": [1], "attrs": {"release": "r"}}, r"aggregates\[0\] must be an object"),
        ({"aggregates": [{"exited": 1}], "attrs": {"release": "r"}}, r"aggregates\[0\].started is missing"),
        (
            {"aggregates": [{"started": "2020-02-07T14:16:00Z", "exited": -2}], "attrs": {"release": "r"}},
            r"aggregates\[0\].exited must be a non-negative integer",
        ),
    ],
)
def test_invalid_aggregates(payload: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidSession, match=fragment):
        parse_session_aggregates(payload)
