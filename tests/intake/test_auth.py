from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from detector.intake.auth import (
    parse_auth_header,
    project_id_from_dsn,
    public_key_from_dsn,
    public_key_from_request,
)


def test_key_from_real_browser_query_string(fixtures_dir: Path) -> None:
    request = json.loads((fixtures_dir / "real-clients" / "browser-03-event.request.json").read_text())
    query = dict(parse_qsl(urlsplit(request["path"]).query))
    assert public_key_from_request(query, None, None) == "abc123publickey"


def test_key_from_x_sentry_auth_header() -> None:
    header = "Sentry sentry_key=abc123, sentry_version=7, sentry_client=sentry.python/2.10.0"
    assert public_key_from_request({}, header, None) == "abc123"


def test_header_wins_over_query_and_dsn() -> None:
    header = "Sentry sentry_key=fromheader, sentry_version=7"
    assert public_key_from_request({"sentry_key": "fromquery"}, header, "http://fromdsn@h/1") == "fromheader"
    assert public_key_from_request({"sentry_key": "fromquery"}, None, "http://fromdsn@h/1") == "fromquery"


def test_key_from_envelope_dsn() -> None:
    assert public_key_from_request({}, None, "http://abc123publickey@127.0.0.1:9912/42") == "abc123publickey"
    # Old DSNs carry a secret after the colon; only the public part is the key.
    assert public_key_from_request({}, None, "https://e12d836b15bb49d7@sentry.io/42") == "e12d836b15bb49d7"
    assert public_key_from_dsn("https://e12d:secret@sentry.io/42") == "e12d"


@pytest.mark.parametrize(
    ("query", "header", "dsn"),
    [
        ({}, None, None),
        ({"sentry_key": ""}, "", ""),
        ({"sentry_key": "  "}, "Sentry sentry_version=7", None),
        ({}, None, "http://host/42"),
        ({}, None, "not a dsn"),
    ],
)
def test_no_key(query: dict[str, str], header: str | None, dsn: str | None) -> None:
    assert public_key_from_request(query, header, dsn) is None


def test_parse_auth_header_tolerates_spacing_and_missing_scheme() -> None:
    assert parse_auth_header("Sentry  sentry_key = k ,sentry_version=7,junk") == {
        "sentry_key": "k",
        "sentry_version": "7",
    }
    assert parse_auth_header("sentry_key=k, sentry_secret=s") == {"sentry_key": "k", "sentry_secret": "s"}


@pytest.mark.parametrize(
    ("dsn", "project_id"),
    [
        ("http://abc123publickey@127.0.0.1:9912/42", 42),
        ("https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42", 42),
        ("https://key@example.com/prefix/path/7/", 7),
        ("https://key@example.com/", None),
        ("https://key@example.com/abc", None),
        ("http://[::1", None),
    ],
)
def test_project_id_from_dsn(dsn: str, project_id: int | None) -> None:
    assert project_id_from_dsn(dsn) == project_id
