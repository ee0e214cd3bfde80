"""The alert outbox against a Slack stand-in: outages, rate limits, bot threads and state changes.

Detection runs for real on a small seed incident queued straight into the intake queue; time passing
is simulated by moving a row's `next_attempt_at`, so nothing here sleeps through a backoff.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.config import Settings
from detector.demo import scenario
from detector.deploys.service import record_deploy
from detector.detection import AnomalyChange
from detector.intake.digest import digest_all
from detector.metrics import Metrics
from detector.notify import deliver_pending, enqueue_alerts, enqueue_state_change
from detector.scheduling import DeliveryJob, DetectionJob, run_project_pass
from detector.store.db import transaction
from detector.store.models import Anomaly, Notification, Project, WorkerLease
from detector.store.projects import create_token
from tests.alerts.slack_standin import SlackStandin, validate_message
from tests.e2e.test_workers_crash import fill_queue


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


def webhook_settings(settings: Settings, slack: SlackStandin) -> Settings:
    return settings.model_copy(update={"slack_webhook_url": slack.webhook_url, "detect_interval_seconds": 0.0})


def bot_settings(settings: Settings, slack: SlackStandin) -> Settings:
    return settings.model_copy(
        update={
            "slack_bot_token": slack.token,
            "slack_channel": slack.channel,
            "slack_api_url": slack.api_base_url,
            "detect_interval_seconds": 0.0,
        }
    )


def seed_incident(factory: sessionmaker[Session], project: Project, *, minutes: int = 3) -> datetime:
    """A deploy `minutes + 1` minutes ago and the seed TypeError in ~5% of sessions since; digested."""
    deployed = (datetime.now(UTC) - timedelta(minutes=minutes + 1)).replace(second=0, microsecond=0)
    with transaction(factory) as session:
        record_deploy(
            session,
            project=session.get(Project, project.id),
            release="web@1.2.0",
            environment="production",
            date_started=None,
            date_finished=deployed,
            name=None,
            url=None,
            sha=None,
            source="api",
        )
    fill_queue(factory, project.id, deployed, events=30 * minutes, minutes=minutes, sessions_per_minute=600)
    digest_all(factory)
    return deployed


def rows(factory: sessionmaker[Session]) -> list[Notification]:
    with factory() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def make_due(factory: sessionmaker[Session]) -> None:
    """What waiting out every backoff would do."""
    with transaction(factory) as session:
        session.execute(update(Notification).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))


def passes(factory: sessionmaker[Session]) -> datetime | None:
    with factory() as session:
        return session.scalar(select(WorkerLease.last_run_at).where(WorkerLease.name.like("detect:%")))


def plain_anomaly(factory: sessionmaker[Session], project: Project, key: str, state: str = "open") -> int:
    now = datetime.now(UTC)
    with transaction(factory) as session:
        anomaly = Anomaly(
            project_id=project.id,
            key=key,
            kind="new_signature",
            state=state,
            title=f"TypeError: {key}",
            release="web@1.2.0",
            environment="production",
            first_seen=now,
            detected_at=now,
            updated_at=now,
            events=10,
            users=5,
            sessions_affected=5,
            score=50.0,
        )
        session.add(anomaly)
        session.flush()
        return anomaly.id


def queue_new(factory: sessionmaker[Session], anomaly_id: int, channel: str) -> None:
    with transaction(factory) as session:
        enqueue_alerts(session, [AnomalyChange(anomaly_id, "created", "new_signature")], channel=channel)


def test_slack_outage_keeps_the_alert_in_the_outbox_and_it_goes_out_once_when_slack_is_back(
    settings: Settings, factory: sessionmaker[Session], project: Project, slack: SlackStandin
) -> None:
    settings = webhook_settings(settings, slack)
    seed_incident(factory, project)
    metrics = Metrics()
    detection = DetectionJob(factory, settings, metrics, owner="test-worker")
    delivery = DeliveryJob(factory, settings, metrics)
    slack.outage(times=5, status=503)

    started = time.monotonic()
    detection.run()
    delivery.run()
    assert time.monotonic() - started < 5, "an outage costs one request, not a sleep in a retry loop"
    assert metrics.detection_passes._value.get() == 1
    (queued,) = rows(factory)
    assert queued.state == "pending" and queued.attempts == 1
    assert "503" in (queued.last_error or "")
    assert queued.next_attempt_at > datetime.now(UTC), "backed off"
    assert metrics.alert_failures._value.get() == 1
    requests_during_outage = len(slack.requests)
    assert requests_during_outage == 1

    # Slack is still down, and the next pass runs anyway; the alert is not due yet, so nothing is sent.
    first_pass = passes(factory)
    detection.run()
    delivery.run()
    assert passes(factory) > first_pass, "detection goes on during the outage"
    assert metrics.detection_passes._value.get() == 2
    assert len(slack.requests) == requests_during_outage

    slack._state.faults.clear()  # Slack is back
    make_due(factory)
    delivery.run()
    delivery.run()
    (sent,) = rows(factory)
    assert sent.state == "sent" and sent.attempts == 2 and sent.last_error is None
    accepted = slack.accepted_payloads()
    assert len(accepted) == 1
    assert validate_message(accepted[0]) is None
    assert scenario.INCIDENT_TITLE_PART in accepted[0]["text"]
    assert metrics.alerts_sent._value.get() == 1


def test_429_retry_after_sets_next_attempt_and_postpones_the_rest_of_the_round(
    settings: Settings, factory: sessionmaker[Session], project: Project, slack: SlackStandin
) -> None:
    settings = webhook_settings(settings, slack)
    first, second = plain_anomaly(factory, project, "a"), plain_anomaly(factory, project, "b")
    queue_new(factory, first, "webhook")
    queue_new(factory, second, "webhook")
    slack.rate_limit(retry_after=30)

    before = datetime.now(UTC)
    assert deliver_pending(factory, settings) == 0
    assert len(slack.requests) == 1, "a 429 ends the round: Slack asked for quiet"
    limited, untried = rows(factory)
    assert limited.attempts == 0 and limited.last_error == "rate_limited", "a 429 is not an attempt"
    assert timedelta(seconds=29) <= limited.next_attempt_at - before <= timedelta(seconds=32)
    assert untried.attempts == 0 and untried.next_attempt_at >= limited.next_attempt_at
    assert limited.lease_until is None and untried.lease_until is None

    assert deliver_pending(factory, settings) == 0, "not before Retry-After"
    assert len(slack.requests) == 1
    make_due(factory)
    assert deliver_pending(factory, settings) == 2
    assert [r.state for r in rows(factory)] == ["sent", "sent"]
    assert len(slack.accepted_payloads()) == 2


def test_a_refused_message_fails_for_good_and_the_round_goes_on(
    settings: Settings, factory: sessionmaker[Session], project: Project, slack: SlackStandin
) -> None:
    settings = webhook_settings(settings, slack).model_copy(update={"slack_webhook_url": slack.base_url + "/nope"})
    queue_new(factory, plain_anomaly(factory, project, "a"), "webhook")
    queue_new(factory, plain_anomaly(factory, project, "b"), "webhook")
    assert deliver_pending(factory, settings) == 0
    assert [(r.state, r.last_error) for r in rows(factory)] == [("failed", "no_service")] * 2
    make_due(factory)
    assert deliver_pending(factory, settings) == 0
    assert len(slack.requests) == 2, "failed rows are never sent again"


def test_bot_posts_the_alert_then_replies_in_its_thread_on_growth_and_resolve(
    settings: Settings, factory: sessionmaker[Session], project: Project, slack: SlackStandin
) -> None:
    settings = bot_settings(settings, slack)
    deployed = seed_incident(factory, project, minutes=3)
    # an early pass sees the first minute only; the job's pass (now) sees three times as many sessions
    early = run_project_pass(factory, settings, project_id=project.id, at=deployed + timedelta(minutes=2, seconds=5))
    (created,) = [c for c in early if c.change == "created" and c.kind == "new_signature"]
    # the alert, and its deploy's verdict (failing) as the first reply in its thread
    assert deliver_pending(factory, settings) == 2
    (alert,) = [m for m in slack.messages if m.thread_ts is None]
    assert alert.blocks
    (verdict,) = slack.replies(alert.ts)
    assert "Deploy verdict: failing for web@1.2.0" in (verdict.text or "")

    DetectionJob(factory, settings, Metrics(), owner="test-worker").run()
    DeliveryJob(factory, settings, Metrics()).run()
    replies = slack.replies(alert.ts)
    assert len(replies) == 2, [m.text for m in slack.messages]
    assert "Still open" in str(replies[1].blocks) or "Grown" in str(replies[1].blocks)

    with TestClient(create_app(settings)) as client:
        with transaction(factory) as session:
            token = create_token(session, label="tests")
        answer = client.post(
            f"/api/v1/projects/{project.slug}/anomalies/{created.anomaly_id}/resolve",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "resolved"
    assert deliver_pending(factory, settings) == 1
    replies = slack.replies(alert.ts)
    assert len(replies) == 3
    assert "Resolved" in str(replies[2].blocks)
    assert all(validate_message({"text": m.text, "blocks": m.blocks}) is None for m in slack.messages)
    assert len([m for m in slack.messages if m.thread_ts is None]) == 1, "one top-level message"
    notes = [r for r in rows(factory) if r.anomaly_id == created.anomaly_id]
    assert [(n.revision, n.purpose, n.state) for n in notes] == [
        (0, "new", "sent"),
        (1, "verdict", "sent"),
        (2, "update", "sent"),
        (3, "update", "sent"),
    ]
    assert notes[1].thread_ts == notes[2].thread_ts == notes[3].thread_ts == alert.ts


def test_a_reply_waits_for_its_thread_and_fails_when_the_first_message_failed(
    settings: Settings, factory: sessionmaker[Session], project: Project, slack: SlackStandin
) -> None:
    settings = bot_settings(settings, slack)
    anomaly_id = plain_anomaly(factory, project, "a")
    queue_new(factory, anomaly_id, "bot")
    with transaction(factory) as session:
        assert enqueue_state_change(session, anomaly_id, channel="bot")
    slack.outage(times=1)
    assert deliver_pending(factory, settings) == 0
    first, reply = rows(factory)
    assert first.state == "pending" and first.attempts == 1
    assert reply.state == "pending" and reply.attempts == 0, "the reply was not sent without its thread"

    with transaction(factory) as session:
        session.execute(update(Notification).where(Notification.id == first.id).values(state="failed"))
    make_due(factory)
    assert deliver_pending(factory, settings) == 0
    assert rows(factory)[1].state == "failed"
    assert len(slack.requests) == 1


def test_state_changes_queue_a_reply_only_where_there_is_a_thread(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    alerted, silent = plain_anomaly(factory, project, "a"), plain_anomaly(factory, project, "b")
    queue_new(factory, alerted, "bot")
    with transaction(factory) as session:
        assert not enqueue_state_change(session, alerted, channel="webhook"), "a webhook has no threads"
        assert not enqueue_state_change(session, alerted, channel=None)
        assert not enqueue_state_change(session, silent, channel="bot"), "never alerted: nothing to reply to"
        assert enqueue_state_change(session, alerted, channel="bot")
    assert [(r.anomaly_id, r.revision, r.purpose) for r in rows(factory)] == [
        (alerted, 0, "new"),
        (alerted, 1, "update"),
    ]


def test_a_muted_anomaly_gets_no_growth_replies(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    muted = plain_anomaly(factory, project, "a", state="muted")
    queue_new(factory, muted, "bot")
    with transaction(factory) as session:
        queued = enqueue_alerts(session, [AnomalyChange(muted, "grew", "new_signature")], channel="bot")
    assert queued == 0
    assert len(rows(factory)) == 1


def test_resolve_through_the_api_with_a_webhook_queues_nothing(
    settings: Settings, factory: sessionmaker[Session], project: Project, slack: SlackStandin
) -> None:
    settings = webhook_settings(settings, slack)
    anomaly_id = plain_anomaly(factory, project, "a")
    queue_new(factory, anomaly_id, "webhook")
    with transaction(factory) as session:
        token = create_token(session, label="tests")
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            f"/api/v1/projects/{project.slug}/anomalies/{anomaly_id}/resolve",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 200
    assert len(rows(factory)) == 1
