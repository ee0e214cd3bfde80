from __future__ import annotations

from datetime import UTC, datetime

import pytest

from detector.deploys.ranges import (
    CommitSource,
    choose_commit_source,
    dedupe_key,
    deployed_at,
    not_yet_deployed,
    range_start,
)

T0 = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 27, 15, 5, tzinfo=UTC)


def choose(**overrides: object) -> CommitSource:
    args: dict[str, object] = {
        "explicit": False,
        "repo_available": False,
        "sha": None,
        "range_start": None,
        "release_has_undeployed": False,
        "head_commit_known": False,
    }
    args.update(overrides)
    return choose_commit_source(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"explicit": True, "repo_available": True, "sha": "a", "range_start": "b"}, CommitSource.EXPLICIT),
        ({"repo_available": True, "sha": "a", "range_start": "b"}, CommitSource.GIT_RANGE),
        ({"repo_available": True, "sha": "a", "release_has_undeployed": True}, CommitSource.RELEASE),
        ({"sha": "a", "range_start": "b", "release_has_undeployed": True}, CommitSource.RELEASE),
        ({"repo_available": True, "sha": "a"}, CommitSource.GIT_RECENT),
        ({"sha": "a", "head_commit_known": True}, CommitSource.HEAD_ONLY),
        ({"repo_available": True}, CommitSource.NONE),
        ({}, CommitSource.NONE),
    ],
)
def test_commit_source_preference(overrides: dict[str, object], expected: CommitSource) -> None:
    assert choose(**overrides) is expected


def test_range_starts_at_from_sha_then_previous_deploy() -> None:
    assert range_start("f00d", "beef", "cafe") == "f00d"
    assert range_start(None, "beef", "cafe") == "beef"
    assert range_start(None, None, "cafe") is None


def test_redeploying_the_same_sha_has_no_range_start() -> None:
    assert range_start(None, "cafe1234" * 5, "cafe1234") is None


def test_not_yet_deployed_keeps_order_and_drops_deployed() -> None:
    assert not_yet_deployed([5, 3, 9, 1], {3, 1}) == [5, 9]


def test_deployed_at_prefers_finish_then_start_then_now() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert deployed_at(T0, T1, now) == T1
    assert deployed_at(T0, None, now) == T0
    assert deployed_at(None, None, now) == now


def test_dedupe_key_is_stable_for_retries_and_differs_by_time_or_sha() -> None:
    key = dedupe_key(sha="abc", date_started=None, date_finished=T1, name=None, url=None)
    assert key == dedupe_key(sha="ABC", date_started=None, date_finished=T1, name=None, url=None)
    assert key != dedupe_key(sha="abc", date_started=None, date_finished=T0, name=None, url=None)
    assert key != dedupe_key(sha="abd", date_started=None, date_finished=T1, name=None, url=None)
    assert len(key) <= 128
