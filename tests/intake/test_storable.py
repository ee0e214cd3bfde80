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


def test_unstorable_text_names_the_first_string_holding_a_nul() -> None:
    data = {"a": "ok", "b": [{"c": "x"}, {"d": "y\x00"}], "e": "z\x00"}
    problem = storable.unstorable_text(json.dumps(data).encode(), data)
    assert problem == "b[1].d contains a NUL character (\\u0000)"


def test_unstorable_text_finds_lone_surrogates_but_not_pairs() -> None:
    paired = json.loads('{"emoji": "\\ud83d\\ude00"}')
    assert storable.unstorable_text(b'{"emoji": "\\ud83d\\ude00"}', paired) is None
    lone_text = b'{"attrs": {"release": "web\\uDC00"}}'
    problem = storable.unstorable_text(lone_text, json.loads(lone_text))
    assert problem == "attrs.release contains a lone UTF-16 surrogate (half of a pair)"


def test_unstorable_text_ignores_an_escaped_backslash_before_u0000() -> None:
    data = {"message": "\\u0000"}
    payload = json.dumps(data).encode()
    assert b"\\u0000" in payload
    assert storable.unstorable_text(payload, data) is None


def test_unstorable_text_walks_nesting_deeper_than_recursion_would() -> None:
    data: object = "deep\x00"
    for _ in range(5000):
        data = [data]
    assert storable.unstorable_text(b"\\u0000", data) == "[0]" * 5000 + " contains a NUL character (\\u0000)"
