from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detector.deploys.records import (
    CommitRecord,
    FileRecord,
    enrich_commit,
    parse_api_commit,
    parse_commit_list,
    parse_sentry_commit,
    parse_timestamp,
)
from detector.errors import InvalidInput


def sentry_cli_put_body(fixtures_dir: Path) -> dict:
    requests = json.loads((fixtures_dir / "real-clients" / "sentry-cli-releases.requests.json").read_text())
    return next(r["body"] for r in requests if r["method"] == "PUT" and "commits" in (r["body"] or {}))


def test_sentry_cli_commits_parse_from_the_recorded_request(fixtures_dir: Path) -> None:
    commits = parse_commit_list(sentry_cli_put_body(fixtures_dir)["commits"], shape="sentry")

    assert [c.sha for c in commits] == [
        "32214d2db04e671c836df6c8d07bbb94798e85eb",
        "ccd37021ca256e597359bd3d43ed23c65ae5d118",
    ]
    first = commits[0]
    assert first.message == "Add instrumentation and improve error logging"
    assert (first.author_name, first.author_email) == ("Dev One", "dev@example.com")
    assert first.timestamp == datetime(2026, 11, 27, 15, 4, 21, tzinfo=UTC)
    assert first.repository == "origin"
    assert first.files == (
        FileRecord(path="src/api/entitlements.ts", change_type="M"),
        FileRecord(path="src/instrument.ts", change_type="A"),
    )
    assert not first.enriched


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T15:04:21.608110555Z", datetime(2026, 11, 27, 15, 4, 21, 608110, tzinfo=UTC)),
        ("2026-11-27T16:04:21+01:00", datetime(2026, 11, 27, 15, 4, 21, tzinfo=UTC)),
        (1795700000, datetime.fromtimestamp(1795700000, tz=UTC)),
        ("1795700000", datetime.fromtimestamp(1795700000, tz=UTC)),
        (None, None),
    ],
)
def test_timestamps_accept_sentry_nanoseconds_offsets_and_unix_seconds(value: object, expected: object) -> None:
    assert parse_timestamp(value, name="t") == expected


@pytest.mark.parametrize("value", ["yesterday", True, [1], "2026-13-40T00:00:00Z"])
def test_bad_timestamps_name_the_field(value: object) -> None:
    with pytest.raises(InvalidInput, match="dateFinished"):
        parse_timestamp(value, name="dateFinished")


def test_api_commit_shape_round_trips_files_with_renames_and_counts() -> None:
    record = parse_api_commit(
        {
            "sha": "ABCDEF1234",
            "message": "Rename\n",
            "author": {"name": "Dana", "email": "dana@example.com"},
            "timestamp": "2026-11-27T15:00:00Z",
            "files": [
                {"path": "b.js", "change_type": "R", "old_path": "a.js", "additions": 1, "deletions": 2},
                {"path": "c.js", "change_type": "m", "patch": "@@ -1 +1 @@\n-a\n+b\n"},
            ],
        }
    )
    assert record.sha == "abcdef1234"
    assert record.message == "Rename"
    assert record.files[0] == FileRecord("b.js", "R", old_path="a.js", additions=1, deletions=2)
    assert record.files[1].change_type == "M"
    assert record.files[1].patch == "@@ -1 +1 @@\n-a\n+b\n"


@pytest.mark.parametrize(
    ("commit", "message"),
    [
        ({"sha": "not-a-sha"}, r"commits\[0\]\.sha"),
        ({"sha": "abcd1234", "files": [{"path": "x", "change_type": "Q"}]}, "change_type"),
        ({"sha": "abcd1234", "files": [{"path": "x", "change_type": "R"}]}, "old_path"),
        ({"sha": "abcd1234", "files": [{"change_type": "M"}]}, "path is required"),
        ({"sha": "abcd1234", "files": [{"path": "x", "additions": -1}]}, "additions"),
        ({"sha": "abcd1234", "author": "dana"}, "author"),
        ("abcd1234", "expected an object"),
    ],
)
def test_invalid_api_commits_are_refused_with_the_field_named(commit: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_api_commit(commit)


def test_sentry_patch_set_type_must_be_a_change_type() -> None:
    with pytest.raises(InvalidInput, match=r"patch_set\[0\]\.type"):
        parse_sentry_commit({"id": "abcd1234", "patch_set": [{"path": "x", "type": "X"}]})


def test_enrichment_takes_repository_files_and_keeps_what_the_sender_said() -> None:
    sent = CommitRecord(sha="abcd1234", message="as sent", files=(FileRecord("a.js", "M"),))
    local = CommitRecord(
        sha="abcd1234",
        message="local",
        author_name="Dana",
        files=(FileRecord("a.js", "M", additions=3, deletions=1, patch="@@ -1 +1,3 @@\n"),),
        enriched=True,
    )
    merged = enrich_commit(sent, local)
    assert merged.message == "as sent"
    assert merged.author_name == "Dana"
    assert merged.files == local.files
    assert merged.enriched
