"""Pull mode against the Sentry stand-in, on the test database (SQLite or PostgreSQL)."""

from __future__ import annotations

import copy
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.metrics import Metrics
from detector.runtime import build_worker_from_settings
from detector.sources import sentry_pull
from detector.sources.sentry_pull import (
    PullConflict,
    PullReport,
    RetryPolicy,
    SentryApi,
    SentryPull,
    SentryUnavailable,
    events_cursor_key,
    pull_project_events,
    read_cursor,
)
from detector.store.db import make_engine, make_sessionmaker, transaction
from detector.store.models import Project, PullCursor, RawItem
from tests.sources.sentry_standin import SentryStandin

FULL_EVENT_ID = "9999aaaaca8b46d797c23c6077c6ff01"  # 2020-06-17T22:26:56Z, full (entries)
LISTED_EVENT_ID = "9fac2ceed9344f2bbfdd1fdacb0ed9b1"  # 2020-09-11T17:46:36Z, summary form
LOOKBACK = timedelta(days=365 * 10)  # the documented examples are from 2020


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sentry(fixtures_dir: Path) -> Iterator[SentryStandin]:
    with SentryStandin.from_fixtures(fixtures_dir, page_size=1) as standin:
        yield standin


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2020, 9, 12, tzinfo=UTC))


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def make_api(
    sentry: SentryStandin, sleep: FakeSleep, clock: Clock, token: str | None = None, **retry: Any
) -> SentryApi:
    return SentryApi(
        sentry.base_url,
        token or sentry.token,
        timeout=5.0,
        retry=RetryPolicy(**retry),
        sleep=sleep,
        clock=clock,
        jitter=lambda: 1.0,  # the longest backoff of each attempt, so waits are exact
    )


def pull(
    factory: sessionmaker[Session],
    sentry: SentryStandin,
    project: Project,
    sleep: FakeSleep,
    clock: Clock,
    *,
    max_pages: int = 50,
    token: str | None = None,
    **retry: Any,
) -> PullReport:
    with make_api(sentry, sleep, clock, token, **retry) as api:
        return pull_project_events(
            factory,
            api,
            org=sentry.org,
            sentry_project=sentry.projects[0],
            project_id=project.id,
            initial_lookback=LOOKBACK,
            max_pages=max_pages,
            clock=clock,
        )


def derived_event(base: dict[str, Any], event_id: str, date_created: str) -> dict[str, Any]:
    """A new event arriving in Sentry: the documented full event with another id and time."""
    event = copy.deepcopy(base)
    event["eventID"], event["id"], event["dateCreated"] = event_id, event_id, date_created
    return event


def stored_items(factory: sessionmaker[Session]) -> list[RawItem]:
    with transaction(factory) as session:
        return list(session.scalars(select(RawItem).order_by(RawItem.id)))


def stored_ids(factory: sessionmaker[Session]) -> list[str]:
    return [item.event_id or "" for item in stored_items(factory)]


def cursor_row(factory: sessionmaker[Session], sentry: SentryStandin) -> PullCursor:
    with transaction(factory) as session:
        row = session.get(PullCursor, events_cursor_key(sentry.org, sentry.projects[0]))
        assert row is not None
        return row


def full_event(sentry: SentryStandin) -> dict[str, Any]:
    return next(e for e in sentry.events if e["eventID"] == FULL_EVENT_ID)


# --- pages ------------------------------------------------------------------------------------------


def test_pages_are_followed_and_events_enqueued_as_sdk_payloads(
    factory: sessionmaker[Session], project: Project, sentry: SentryStandin, sleep: FakeSleep, clock: Clock
) -> None:
    report = pull(factory, sentry, project, sleep, clock)

    assert (report.pages, report.events_stored, report.sweeps_completed, report.error) == (2, 2, 1, None)
    requests = sentry.requests_to("/events/")
    assert [r.query.get("cursor") for r in requests] == [None, "0:1:0"]
    assert all(r.query["full"] == "true" for r in requests)
    assert requests[0].query["start"] == "2010-09-15T00:00:00Z" and requests[0].query["end"] == "2020-09-12T00:00:00Z"
    assert requests[1].query["end"] == requests[0].query["end"]  # the window is frozen for the sweep

    items = stored_items(factory)
    assert [i.event_id for i in items] == [LISTED_EVENT_ID, FULL_EVENT_ID]  # newest first, as listed
    assert {i.item_type for i in items} == {"event"} and {i.project_id for i in items} == {project.id}
    payload = json.loads(items[1].payload)
    assert payload["exception"]["values"][0]["stacktrace"]["frames"][0]["lineno"] == 71
    assert payload["environment"] == "prod"

    row = cursor_row(factory, sentry)
    assert row.cursor is None and "sweep" not in row.state
    assert row.state["watermark"] == "2020-09-11T17:46:36Z"
    assert row.state["last_error"] is None
    assert set(row.state["seen"]) == {LISTED_EVENT_ID}  # only ids inside the overlap window are kept


def test_restart_resumes_from_the_stored_cursor_without_gaps_or_duplicates(
    settings: Settings, project: Project, sentry: SentryStandin, sleep: FakeSleep, clock: Clock
) -> None:
    base = full_event(sentry)
    for n, when in enumerate(["2020-09-01T10:00:00Z", "2020-08-01T10:00:00Z", "2020-07-01T10:00:00Z"]):
        sentry.add_event(derived_event(base, f"{n + 1:032x}", when))
    all_ids = {e["eventID"] for e in sentry.events}

    # first process: stops after two of five pages (its interval ended, or it was killed)
    engine = make_engine(settings.database_url)
    first = pull(make_sessionmaker(engine), sentry, project, sleep, clock, max_pages=2)
    engine.dispose()
    assert (first.pages, first.events_stored, first.sweeps_completed) == (2, 2, 0)

    # a new process: new engine, new client, same database
    engine = make_engine(settings.database_url)
    factory = make_sessionmaker(engine)
    assert cursor_row(factory, sentry).cursor == "0:2:0"
    sentry.requests.clear()
    second = pull(factory, sentry, project, sleep, clock)
    assert [r.query.get("cursor") for r in sentry.requests_to("/events/")] == ["0:2:0", "0:3:0", "0:4:0"]
    assert (second.events_stored, second.sweeps_completed) == (3, 1)
    ids = stored_ids(factory)
    assert len(ids) == len(set(ids)) == 5 and set(ids) == all_ids

    # later: a new event, and one Sentry ingested late (older than the newest we saw, inside the overlap)
    sentry.add_event(derived_event(base, "b" * 32, "2020-09-12T08:00:00Z"))
    sentry.add_event(derived_event(base, "c" * 32, "2020-09-11T17:40:00Z"))
    clock.now = datetime(2020, 9, 12, 9, 0, tzinfo=UTC)
    sentry.requests.clear()
    third = pull(factory, sentry, project, sleep, clock)
    assert sentry.requests_to("/events/")[0].query["start"] == "2020-09-11T17:31:36Z"  # watermark - 15 min
    assert third.events_stored == 2
    assert third.events_already_seen == 1  # the watermark's own event, listed again in the overlap
    ids = stored_ids(factory)
    assert len(ids) == len(set(ids)) == 7 and set(ids) == all_ids | {"b" * 32, "c" * 32}
    assert cursor_row(factory, sentry).state["watermark"] == "2020-09-12T08:00:00Z"

    # nothing new: nothing stored
    sentry.requests.clear()
    assert pull(factory, sentry, project, sleep, clock).events_stored == 0
    assert len(stored_ids(factory)) == 7
    engine.dispose()


def test_a_crash_before_the_commit_repeats_the_page_and_loses_nothing(
    factory: sessionmaker[Session],
    project: Project,
    sentry: SentryStandin,
    sleep: FakeSleep,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_write = sentry_pull._write_cursor
    calls = {"n": 0}

    def crash_on_second_page(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("process killed")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(sentry_pull, "_write_cursor", crash_on_second_page)
    with pytest.raises(RuntimeError):
        pull(factory, sentry, project, sleep, clock)
    assert stored_ids(factory) == [LISTED_EVENT_ID]  # the second page's events rolled back with its cursor

    monkeypatch.setattr(sentry_pull, "_write_cursor", real_write)
    report = pull(factory, sentry, project, sleep, clock)
    assert report.events_stored == 1
    assert stored_ids(factory) == [LISTED_EVENT_ID, FULL_EVENT_ID]


def test_a_stale_cursor_snapshot_cannot_be_written(factory: sessionmaker[Session]) -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    with transaction(factory) as session:
        snapshot = read_cursor(session, "sentry:o:p:events")
    with transaction(factory) as session:
        sentry_pull._write_cursor(session, snapshot, "0:1:0", {}, now)  # worker A
    with pytest.raises(PullConflict), transaction(factory) as session:
        sentry_pull._write_cursor(session, snapshot, "0:1:0", {}, now)  # worker B, same page
    with transaction(factory) as session:
        assert read_cursor(session, "sentry:o:p:events").revision == 1


# --- rate limits, outages, malformed pages -----------------------------------------------------------


def test_429_waits_as_retry_after_says(
    factory: sessionmaker[Session], project: Project, sentry: SentryStandin, sleep: FakeSleep, clock: Clock
) -> None:
    sentry.rate_limit(retry_after=7, path_contains="/events/", skip=1)
    report = pull(factory, sentry, project, sleep, clock)
    assert sleep.waits == [7.0]
    assert [r.status for r in sentry.requests_to("/events/")] == [200, 429, 200]
    assert report.error is None and len(stored_ids(factory)) == 2


def test_429_longer_than_the_longest_wait_defers_the_project(
    factory: sessionmaker[Session], project: Project, sentry: SentryStandin, sleep: FakeSleep, clock: Clock
) -> None:
    sentry.rate_limit(retry_after=3600, path_contains="/events/")
    report = pull(factory, sentry, project, sleep, clock, max_wait_seconds=60)
    assert sleep.waits == []  # not slept in the worker
    assert report.skipped_until == "2020-09-12T01:00:00Z"
    assert cursor_row(factory, sentry).state["retry_not_before"] == "2020-09-12T01:00:00Z"
    assert "Retry-After 3600" in cursor_row(factory, sentry).state["last_error"]

    clock.now += timedelta(minutes=30)
    sentry.requests.clear()
    assert pull(factory, sentry, project, sleep, clock).skipped_until == "2020-09-12T01:00:00Z"
    assert sentry.requests == []

    clock.now += timedelta(minutes=31)
    later = pull(factory, sentry, project, sleep, clock)
    assert (later.events_stored, later.error) == (2, None)
    assert "retry_not_before" not in cursor_row(factory, sentry).state


def test_5xx_is_retried_with_exponential_backoff(
    factory: sessionmaker[Session], project: Project, sentry: SentryStandin, sleep: FakeSleep, clock: Clock
) -> None:
    sentry.outage(status=502, times=3, path_contains="/events/")
    report = pull(factory, sentry, project, sleep, clock, base_backoff_seconds=0.5)
    assert sleep.waits == [0.5, 1.0, 2.0]
    assert report.error is None and len(stored_ids(factory)) == 2


def test_outage_past_the_attempts_is_recorded_and_earlier_pages_kept(
    factory: sessionmaker[Session], project: Project, sentry: SentryStandin, sleep: FakeSleep, clock: Clock
) -> None:
    sentry.outage(times=3, path_contains="/events/", skip=1)
    report = pull(factory, sentry, project, sleep, clock, max_attempts=3)
    assert report.error is not None and "500 3 times" in report.error
    assert len(sleep.waits) == 2
    assert stored_ids(factory) == [LISTED_EVENT_ID]
    row = cursor_row(factory, sentry)
    assert (row.cursor, row.state["last_error"]) == ("0:1:0", report.error)


@pytest.mark.parametrize("shape", [False, True], ids=["bad-json", "not-a-list"])
def test_malformed_page_is_reported_and_the_next_run_retries_from_the_last_good_cursor(
    factory: sessionmaker[Session],
    project: Project,
    sentry: SentryStandin,
    sleep: FakeSleep,
    clock: Clock,
    shape: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sentry.malformed(shape=shape, path_contains="/events/", skip=1)
    report = pull(factory, sentry, project, sleep, clock)

    assert report.error is not None
    assert ("expected a JSON list" if shape else "not JSON") in report.error
    assert any("failed" in r.message and r.levelname == "WARNING" for r in caplog.records)
    assert stored_ids(factory) == [LISTED_EVENT_ID]
    row = cursor_row(factory, sentry)
    assert row.cursor == "0:1:0" and row.state["last_error"] == report.error
    assert row.state["sweep"]["newest"] == "2020-09-11T17:46:36Z"

    sentry.requests.clear()
    retry = pull(factory, sentry, project, sleep, clock)
    assert [r.query.get("cursor") for r in sentry.requests_to("/events/")] == ["0:1:0"]
    assert (retry.events_stored, retry.error) == (1, None)
    assert stored_ids(factory) == [LISTED_EVENT_ID, FULL_EVENT_ID]
    assert cursor_row(factory, sentry).state["last_error"] is None


def test_an_unmappable_event_is_skipped_not_the_page(
    factory: sessionmaker[Session], project: Project, sentry: SentryStandin, sleep: FakeSleep, clock: Clock
) -> None:
    broken = derived_event(full_event(sentry), "d" * 32, "2020-09-01T00:00:00Z")
    del broken["eventID"]
    sentry.add_event(broken)
    report = pull(factory, sentry, project, sleep, clock)
    assert (report.events_stored, report.events_unmappable, report.error) == (2, 1, None)


def test_a_wrong_token_is_refused_and_recorded(
    factory: sessionmaker[Session], project: Project, sentry: SentryStandin, sleep: FakeSleep, clock: Clock
) -> None:
    report = pull(factory, sentry, project, sleep, clock, token="sntrys_revoked")
    assert report.error is not None and "401" in report.error and "Invalid token" in report.error
    assert sleep.waits == [] and stored_ids(factory) == []
    assert cursor_row(factory, sentry).state["last_error"] == report.error


# --- the worker job ----------------------------------------------------------------------------------


def test_worker_gets_a_pull_job_only_when_pull_mode_is_configured(
    settings: Settings, factory: sessionmaker[Session], sentry: SentryStandin
) -> None:
    unconfigured = build_worker_from_settings(settings, Metrics(), factory)
    assert "sentry-pull" not in [j.name for j in unconfigured.jobs]

    configured = settings.model_copy(
        update={
            "sentry_pull_base_url": sentry.base_url,
            "sentry_pull_token": sentry.token,
            "sentry_pull_org": sentry.org,
            "sentry_pull_projects": ["sentry"],
            "sentry_pull_interval_seconds": 30.0,
        }
    )
    worker = build_worker_from_settings(configured, Metrics(), factory)
    (job,) = [j for j in worker.jobs if j.name == "sentry-pull"]
    assert job.interval == 30.0


def test_pull_creates_the_project_and_reads_projects_from_the_environment(
    database_url: str, factory: sessionmaker[Session], sentry: SentryStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DETECTOR_SENTRY_PULL_PROJECTS", '["sentry"]')
    settings = Settings(
        database_url=database_url,
        sentry_pull_base_url=sentry.base_url,
        sentry_pull_token=sentry.token,
        sentry_pull_org=sentry.org,
    )
    runner = SentryPull.from_settings(settings, factory)
    runner.initial_lookback = LOOKBACK
    (report,) = runner.run()
    assert report.events_stored == 2
    with transaction(factory) as session:
        project = session.scalar(select(Project).where(Project.slug == "sentry"))
    assert project is not None and {i.project_id for i in stored_items(factory)} == {project.id}


def test_a_run_past_its_deadline_stops_after_the_page_in_hand(
    factory: sessionmaker[Session], project: Project, sentry: SentryStandin, sleep: FakeSleep, clock: Clock
) -> None:
    with make_api(sentry, sleep, clock) as api:
        report = pull_project_events(
            factory,
            api,
            org=sentry.org,
            sentry_project=sentry.projects[0],
            project_id=project.id,
            initial_lookback=LOOKBACK,
            deadline=time.monotonic() - 1,
            clock=clock,
        )
    assert (report.pages, report.events_stored, report.sweeps_completed) == (1, 1, 0)
    assert cursor_row(factory, sentry).cursor == "0:1:0"


def test_seen_ids_kept_during_a_sweep_are_only_those_that_can_be_listed_again() -> None:
    watermark = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    seen = {
        "previous-overlap": "2024-01-01T11:50:00Z",  # listed again at the end of this sweep
        "newest": "2024-01-02T12:00:00Z",  # the next sweep starts 15 minutes before it
        "in-next-overlap": "2024-01-02T11:50:00Z",
        "middle": "2024-01-02T08:00:00Z",  # neither: forgotten
        "on-this-page": "2024-01-02T07:00:00Z",  # a late arrival may shift it onto the next page
    }
    kept = sentry_pull._seen_worth_keeping(
        seen,
        watermark=watermark,
        newest=datetime(2024, 1, 2, 12, 0, tzinfo=UTC),
        overlap=timedelta(minutes=15),
        page_ids={"on-this-page"},
    )
    assert set(kept) == {"previous-overlap", "newest", "in-next-overlap", "on-this-page"}


def test_connection_errors_are_retried_with_backoff_then_reported(sleep: FakeSleep, clock: Clock) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = SentryApi(
        f"http://127.0.0.1:{port}",
        "token",
        timeout=1.0,
        retry=RetryPolicy(max_attempts=3, base_backoff_seconds=0.5),
        sleep=sleep,
        clock=clock,
        jitter=lambda: 0.0,  # the shortest backoff of each attempt: half of it
    )
    with api, pytest.raises(SentryUnavailable, match="ConnectError"):
        api.get_page("/api/0/projects/o/p/events/")
    assert sleep.waits == [0.25, 0.5]
