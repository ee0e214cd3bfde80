"""Sentry API answers → SDK-shaped events, cursors, Retry-After, releases: pure, on the documented examples."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detector.intake.normalize import normalize_event
from detector.sources.sentry_mapping import (
    MalformedPage,
    UnmappableEvent,
    map_commit,
    map_deploy,
    map_event,
    map_frame,
    map_release,
    page_objects,
    parse_link_header,
    parse_retry_after,
)
from tests.sources.sentry_standin import (
    EVENT_DETAIL,
    EVENTS_LIST,
    RELEASE_COMMITS,
    RELEASES_LIST,
    example_values,
)


@pytest.fixture(scope="module")
def examples(fixtures_dir: Path) -> dict[str, Any]:
    return json.loads((fixtures_dir / "sentry-api" / "selected_examples.json").read_text())


@pytest.fixture
def full_event(examples: dict[str, Any]) -> dict[str, Any]:
    return example_values(examples, EVENT_DETAIL)[0]


@pytest.fixture
def listed_event(examples: dict[str, Any]) -> dict[str, Any]:
    return example_values(examples, EVENTS_LIST)[0]


def test_full_event_maps_to_the_sdk_shape(full_event: dict[str, Any]) -> None:
    payload = map_event(full_event)

    assert payload["event_id"] == "9999aaaaca8b46d797c23c6077c6ff01"
    assert payload["timestamp"] == "2020-06-17T22:26:56.098086Z"
    assert payload["platform"] == "javascript"
    assert payload["level"] == "error"
    # no release tag on this event: the release object's version stands in
    assert payload["release"] == "b65bc521378269d3eaefdc964f8ef56621414943"
    assert payload["environment"] == "prod"
    assert payload["user"] == {
        "id": "550747",
        "email": "hell@boy.cat",
        "ip_address": "192.168.1.1",
        "name": "Hell Boy",
        "data": {"isStaff": False},
    }
    assert payload["request"]["url"] == "https://sentry.io/organizations/hellboy-meowmeow/issues/"
    assert payload["request"]["query_string"] == [["project", "5236886"]]
    assert payload["contexts"]["trace"]["trace_id"] == "da6caabcd90e45fdb81f6655824a5f88"
    assert payload["sdk"] == {"version": "5.17.0", "name": "sentry.javascript.browser"}
    assert "release" not in payload["tags"] and payload["tags"]["handled"] == "yes"

    (exception,) = payload["exception"]["values"]
    assert exception["type"] == "ForbiddenError"
    assert exception["value"] == "GET /organizations/hellboy-meowmeow/users/ 403"
    assert exception["mechanism"] == {"type": "generic", "handled": True}
    first = exception["stacktrace"]["frames"][0]
    assert first["abs_path"].endswith("@sentry/browser/esm/helpers.js")
    assert (first["lineno"], first["colno"], first["in_app"], first["function"]) == (71, 23, False, "ignoreOnError")
    assert first["context_line"] == "            return fn.apply(this, wrappedArguments);"
    assert len(first["pre_context"]) == 5 and first["pre_context"][-1].endswith("sentry.javascript.")
    assert first["post_context"][0] == "            // tslint:enable:no-unsafe-any"
    # Sentry's processed frames, not the minified raw ones
    assert all("vendor.js" not in f["abs_path"] for f in exception["stacktrace"]["frames"])


def test_mapped_event_passes_our_normaliser(full_event: dict[str, Any], listed_event: dict[str, Any]) -> None:
    received = datetime(2026, 11, 27, tzinfo=UTC)
    full = normalize_event(map_event(full_event), received_at=received)
    assert full.timestamp == datetime(2020, 6, 17, 22, 26, 56, 98086, tzinfo=UTC)
    assert (full.exception_type, full.handled, full.environment) == ("ForbiddenError", True, "prod")
    assert [f.function for f in full.frames] == ["ignoreOnError", "apply"]
    assert (full.browser, full.os, full.route) == ("Chrome 83", "Windows 10", "/organizations/hellboy-meowmeow/issues/")
    assert full.user_key == "550747"

    listed = normalize_event(map_event(listed_event), received_at=received)
    assert (listed.event_id, listed.level, listed.release, listed.environment) == (
        "9fac2ceed9344f2bbfdd1fdacb0ed9b1",
        "fatal",
        "17642328ead24b51867165985996d04b29310337",
        "production",
    )


def test_listed_event_without_entries_uses_metadata_as_the_exception(listed_event: dict[str, Any]) -> None:
    payload = map_event(listed_event)
    assert payload["exception"] == {
        "values": [{"type": "ExampleException", "value": "This is an example Python exception"}]
    }
    assert "user" not in payload  # the API said null


def test_message_event_keeps_its_message_and_title_is_the_last_resort() -> None:
    base = {"eventID": "a" * 32, "dateCreated": "2024-01-01T00:00:00Z", "title": "Something odd"}
    assert map_event(base)["logentry"] == {"formatted": "Something odd"}
    with_entry = {**base, "entries": [{"type": "message", "data": {"formatted": "disk full", "params": []}}]}
    assert map_event(with_entry)["logentry"] == {"formatted": "disk full", "params": []}


@pytest.mark.parametrize(
    "event",
    [
        {"dateCreated": "2024-01-01T00:00:00Z"},
        {"eventID": "a" * 32},
        {"eventID": "a" * 32, "dateCreated": "yesterday"},
        {"eventID": 7, "dateCreated": "2024-01-01T00:00:00Z"},
    ],
)
def test_events_without_id_or_readable_date_are_unmappable(event: dict[str, Any]) -> None:
    with pytest.raises(UnmappableEvent):
        map_event(event)


def test_frame_context_without_line_number_is_dropped_not_guessed() -> None:
    frame = map_frame({"function": "f", "context": [[1, "a"], [2, "b"]], "inApp": True})
    assert frame == {"function": "f", "in_app": True}


def test_link_header_next_and_last_page() -> None:
    header = (
        '<https://sentry.io/api/0/projects/o/p/events/?cursor=0:0:1>; rel="previous"; results="false"; '
        'cursor="0:0:1", <https://sentry.io/api/0/projects/o/p/events/?cursor=0:100:0>; rel="next"; '
        'results="true"; cursor="0:100:0"'
    )
    links = parse_link_header(header)
    assert links["next"].cursor == "0:100:0" and links["next"].results is True
    assert links["previous"].results is False
    assert links["next"].url.endswith("?cursor=0:100:0")
    last = parse_link_header(header.replace('results="true"', 'results="false"'))
    assert last["next"].results is False
    assert parse_link_header(None) == {} and parse_link_header("garbage") == {}


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("12", now=now) == 12.0
    assert parse_retry_after("Mon, 01 Jan 2024 12:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("soon", now=now) is None


def test_page_must_be_a_list_of_objects() -> None:
    assert page_objects([{"a": 1}]) == [{"a": 1}]
    with pytest.raises(MalformedPage):
        page_objects({"detail": "x"})
    with pytest.raises(MalformedPage, match="item 1"):
        page_objects([{}, "x"])


def test_release_commit_and_deploy_from_the_documented_examples(
    examples: dict[str, Any], full_event: dict[str, Any]
) -> None:
    release = map_release(example_values(examples, RELEASES_LIST)[0])
    assert release.version == "frontend@1.0.0"
    assert release.project_slugs == ("sentry",)
    assert release.date_created == datetime(2024, 1, 1, tzinfo=UTC)
    assert (release.deploy_count, release.commit_count, release.last_deploy_id) == (0, 0, None)

    commit = map_commit(example_values(examples, RELEASE_COMMITS)[0])
    assert commit.sha == "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2"
    assert commit.message == "fix: handle empty release version"
    assert commit.timestamp == datetime(2024, 1, 1, tzinfo=UTC)

    # the deploys example is null in the schema; the event example's release.lastDeploy is the shape
    deploy = map_deploy(full_event["release"]["lastDeploy"])
    assert (deploy.id, deploy.environment, deploy.name) == (
        "6883490",
        "prod",
        full_event["release"]["lastDeploy"]["name"],
    )
    assert deploy.date_started is None
    assert deploy.date_finished == datetime(2020, 6, 17, 19, 20, 55, 641748, tzinfo=UTC)

    with pytest.raises(MalformedPage):
        map_release({"id": 1})
    with pytest.raises(MalformedPage):
        map_deploy({"name": "x"})


def test_docstring_examples_hold() -> None:
    import doctest

    from detector.sources import sentry_mapping

    results = doctest.testmod(sentry_mapping)
    assert results.attempted >= 4 and results.failed == 0
