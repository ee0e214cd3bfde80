"""Alerts under a Slack outage (issue 18, item 7): `Retry-After` is honoured without growing the backoff,
delivery runs beside the digest (a hanging Slack does not pause it), and an alert goes out within one
retry interval (`slack_retry_max_seconds`) of Slack's recovery. Against the Slack stand-in, with the real
worker loop in a thread on the test's database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.metrics import Metrics
from detector.notify import deliver_pending
from detector.runtime import build_worker_from_settings
from detector.store.models import Event, Notification, Project
from tests.alerts.slack_standin import SlackStandin
from tests.e2e.test_workers_crash import fill_queue
from tests.test_notify import plain_anomaly, queue_new, rows, webhook_settings


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


class RunningWorker:
    """The worker `detector worker` runs (every job the settings ask for), looping in a thread."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.worker = build_worker_from_settings(settings, Metrics(), factory)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> RunningWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def stored_events(factory: sessionmaker[Session], ids: set[str]) -> int:
    with factory() as session:
        return session.scalar(select(func.count(Event.id)).where(Event.event_id.in_(ids))) or 0


def wait_until(predicate: object, timeout: float, every: float = 0.02) -> float | None:
    assert callable(predicate)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(every)
    return None


def test_429s_wait_retry_after_and_do_not_grow_the_backoff_of_a_later_outage(
    settings: Settings, factory: sessionmaker[Session], project: Project, slack: SlackStandin
) -> None:
    settings = webhook_settings(settings, slack).model_copy(update={"slack_retry_max_seconds": 30.0})
    queue_new(factory, plain_anomaly(factory, project, "a"), "webhook")
    for _ in range(8):
        slack.rate_limit(retry_after=2)
        before = datetime.now(UTC)
        assert deliver_pending(factory, settings) == 0
        (row,) = rows(factory)
        assert timedelta(seconds=1.9) <= row.next_attempt_at - before <= timedelta(seconds=3), "Retry-After, as is"
        assert row.attempts == 0, "a 429 is Slack declining to process it, not a failed attempt"
        with factory.begin() as session:  # what waiting out Retry-After does
            session.get(Notification, row.id).next_attempt_at = datetime.now(UTC)  # type: ignore[union-attr]
    slack.outage(times=1, status=503)
    before = datetime.now(UTC)
    assert deliver_pending(factory, settings) == 0
    (row,) = rows(factory)
    assert row.attempts == 1
    assert row.next_attempt_at - before <= timedelta(seconds=3), "the first outage failure waits 2 s, not 2^9"

    for _ in range(12):  # a long outage: the wait doubles up to the retry interval and stays there
        slack.outage(times=1, status=503)
        with factory.begin() as session:
            session.get(Notification, row.id).next_attempt_at = datetime.now(UTC)  # type: ignore[union-attr]
        before = datetime.now(UTC)
        deliver_pending(factory, settings)
        (row,) = rows(factory)
        assert row.next_attempt_at - before <= timedelta(seconds=30.5)
    assert row.state == "pending" and row.next_attempt_at - before >= timedelta(seconds=29)


def test_a_hanging_slack_does_not_pause_the_digest(
    settings: Settings, factory: sessionmaker[Session], project: Project, slack: SlackStandin
) -> None:
    settings = webhook_settings(settings, slack).model_copy(update={"slack_timeout_seconds": 4.0})
    queue_new(factory, plain_anomaly(factory, project, "a"), "webhook")
    slack.slow(times=1000, seconds=6.0)  # every request hangs past the sender's timeout
    with RunningWorker(settings, factory):
        assert wait_until(lambda: slack.faults_left < 1000, timeout=20) is not None, "delivery never tried"
        ids = fill_queue(factory, project.id, datetime.now(UTC) - timedelta(minutes=3), events=60, minutes=2)
        took = wait_until(lambda: stored_events(factory, ids) == len(ids), timeout=20)
        assert took is not None
        assert took < 2.0, f"the digest waited {took:.1f} s behind a Slack request hanging for 4 s"
        assert slack.faults_left >= 998, "delivery was still waiting on Slack meanwhile"


def test_an_alert_goes_out_within_one_retry_interval_of_slacks_recovery(
    settings: Settings, factory: sessionmaker[Session], project: Project, slack: SlackStandin
) -> None:
    interval = 2.0
    settings = webhook_settings(settings, slack).model_copy(update={"slack_retry_max_seconds": interval})
    slack.outage(times=10_000, status=503)
    queue_new(factory, plain_anomaly(factory, project, "a"), "webhook")
    with RunningWorker(settings, factory):
        # long enough for the backoff (2, 4, ... s) to reach the retry interval many times over
        assert wait_until(lambda: len(slack.requests) >= 4, timeout=30) is not None
        slack.end_faults()
        recovered = time.monotonic()
        assert wait_until(lambda: slack.accepted_payloads(), timeout=30) is not None
        delay = time.monotonic() - recovered
    assert delay <= interval + 1.5, f"the alert went out {delay:.1f} s after Slack recovered"
    (sent,) = rows(factory)
    assert sent.state == "sent" and sent.attempts >= 4


def test_worker_once_delivers_the_alerts_that_are_due(
    settings: Settings, factory: sessionmaker[Session], project: Project, slack: SlackStandin
) -> None:
    queue_new(factory, plain_anomaly(factory, project, "a"), "webhook")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_") or k.startswith("DETECTOR_TEST")}
    env.update({"DETECTOR_DATABASE_URL": settings.database_url, "DETECTOR_SLACK_WEBHOOK_URL": slack.webhook_url})
    done = subprocess.run(
        [sys.executable, "-m", "detector.cli", "worker", "--once"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert len(slack.accepted_payloads()) == 1, "the delivery job runs once too, not only the loop's jobs"
    assert [row.state for row in rows(factory)] == ["sent"]
