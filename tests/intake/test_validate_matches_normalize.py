"""Intake's cheap `validate_event` refuses exactly what the digest's `normalize_event` would refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detector.intake.normalize import InvalidEvent, normalize_event, validate_event

RECEIVED = datetime(2026, 11, 27, 15, 5, tzinfo=UTC)
BASE: dict[str, Any] = {
    "event_id": "a" * 32,
    "timestamp": 1795791930.0,
    "exception": {"values": [{"type": "TypeError", "value": "x is undefined"}]},
}
CASES: list[Any] = [
    BASE,
    {**BASE, "event_id": None},
    {**BASE, "event_id": "not-hex"},
    {**BASE, "event_id": "A" * 32},
    {**BASE, "event_id": "12345678-1234-1234-1234-1234567890ab"},
    {**BASE, "event_id": 42},
    {**BASE, "timestamp": "2026-11-27T15:05:30Z"},
    {**BASE, "timestamp": "yesterday"},
    {**BASE, "timestamp": -1},
    {**BASE, "timestamp": float("inf")},
    {**BASE, "timestamp": 1e300},
    {**BASE, "timestamp": 946684799},
    {**BASE, "timestamp": "9999-12-31T23:59:59Z"},
    {**BASE, "timestamp": True},
    {**BASE, "timestamp": None},
    {**BASE, "exception": {"values": []}},
    {**BASE, "exception": {"values": [], "message": "x"}},
    {k: v for k, v in BASE.items() if k != "exception"},
    {"event_id": "b" * 32, "message": "plain message"},
    {"event_id": "b" * 32, "message": {"formatted": "formatted message"}},
    {"event_id": "b" * 32, "logentry": {"message": "entry %s", "params": [1]}},
    {"event_id": "b" * 32, "message": ""},
    {"event_id": "b" * 32, "exception": [{"type": "Error"}]},
    {"event_id": "b" * 32, "exception": {"values": [{"value": "only a value"}]}},
    [],
    "event",
    None,
]


def outcome(fn: Any, payload: Any) -> str:
    try:
        fn(payload)
    except InvalidEvent:
        return "refused"
    return "accepted"


@pytest.mark.parametrize("payload", CASES, ids=lambda p: json.dumps(p, default=str)[:60])
def test_validate_refuses_exactly_what_normalize_refuses(payload: Any) -> None:
    assert outcome(validate_event, payload) == outcome(lambda p: normalize_event(p, received_at=RECEIVED), payload)


def test_real_browser_events_agree(fixtures_dir: Path) -> None:
    for path in sorted((fixtures_dir / "real-clients").glob("browser-*-event.envelope")):
        payload = json.loads(path.read_bytes().split(b"\n")[2])
        assert validate_event(payload) == normalize_event(payload, received_at=RECEIVED).event_id
