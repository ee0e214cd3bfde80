"""The storable limits intake checks are the columns' own, and NUL characters are found where they are."""

from __future__ import annotations

import json

from detector.intake import storable
from detector.store.models import Event, SessionState


def test_limits_are_the_lengths_of_the_columns_they_guard() -> None:
    columns = Event.__table__.columns
    assert columns["release"].type.length == storable.MAX_RELEASE_CHARS
    assert columns["environment"].type.length == storable.MAX_ENVIRONMENT_CHARS
    assert columns["user_key"].type.length == storable.MAX_USER_CHARS
    assert columns["session_key"].type.length == storable.MAX_TRACE_ID_CHARS
    assert SessionState.__table__.columns["sid"].type.length == storable.MAX_SESSION_ID_CHARS
    assert SessionState.__table__.columns["distinct_id"].type.length == storable.MAX_USER_CHARS


def test_nul_field_names_the_first_string_holding_one() -> None:
    data = {"a": "ok", "b": [{"c": "x"}, {"d": "y\x00"}], "e": "z\x00"}
    assert storable.nul_field(json.dumps(data).encode(), data) == "b[1].d"


def test_nul_field_ignores_an_escaped_backslash_before_u0000() -> None:
    data = {"message": "\\u0000"}
    payload = json.dumps(data).encode()
    assert b"\\u0000" in payload
    assert storable.nul_field(payload, data) is None


def test_nul_field_walks_nesting_deeper_than_recursion_would() -> None:
    data: object = "deep\x00"
    for _ in range(5000):
        data = [data]
    assert storable.nul_field(b"\\u0000", data) == "[0]" * 5000
