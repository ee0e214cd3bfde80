"""A spike that outlasts the CUSUM's window is one anomaly, passes a minute apart, on a real database;
its Slack thread is told once when it ends, and a later excursion is a second anomaly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from detector.alerts.blocks import update_blocks
from detector.detection import run_detection
from detector.notify import alert_content_for, enqueue_alerts
from detector.store.anomalies import spike_ended_at
from detector.store.db import transaction
from detector.store.models import Anomaly, Notification, Project, SessionMinute, Signature, SignatureMinute

START = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
WARM_HOURS = 12
RISE = START + timedelta(hours=WARM_HOURS)
SESSIONS_PER_MINUTE = 100


def _store_counts(factory: sessionmaker[Session], project_id: int, rates: np.ndarray, seed: int) -> int:
    """Minute counts from START, ``rates[i]`` of sessions affected in minute ``i``; returns the signature id."""
    rng = np.random.default_rng(seed)
    started = rng.poisson(SESSIONS_PER_MINUTE, len(rates))
    affected = rng.binomial(started, rates)
    with transaction(factory) as session:
        signature = Signature(
            project_id=project_id,
            hash="f" * 40,
            type="TypeError",
            value="x is undefined",
            culprit="src/cart.js in total",
            title="TypeError: x is undefined",
            noise_class=None,
            in_app=True,
            first_seen=START,
            last_seen=START + timedelta(minutes=len(rates)),
            first_release="web@1",
        )
        session.add(signature)
        session.flush()
        minutes = [START + timedelta(minutes=i) for i in range(len(rates))]
        session.execute(
            insert(SessionMinute),
            [
                {
                    "project_id": project_id,
                    "release": "web@1",
                    "environment": "production",
                    "minute": m,
                    "started": int(s),
                    "errored": int(k),
                    "crashed": 0,
                }
                for m, s, k in zip(minutes, started, affected, strict=True)
            ],
        )
        session.execute(
            insert(SignatureMinute),
            [
                {
                    "signature_id": signature.id,
                    "release": "web@1",
                    "environment": "production",
                    "minute": m,
                    "project_id": project_id,
                    "events": int(k),
                    "users": int(k),
                    "sessions": int(k),
                }
                for m, k in zip(minutes, affected, strict=True)
                if k > 0
            ],
        )
        return signature.id


def _passes(
    factory: sessionmaker[Session],
    project_id: int,
    begin: datetime,
    end: datetime,
    every: timedelta = timedelta(minutes=1),
) -> list[str]:
    changes = []
    at = begin
    while at <= end:
        for change in run_detection(
            factory, project_id=project_id, at=at, record_alerts=lambda s, c: enqueue_alerts(s, c, channel="bot")
        ):
            changes.append(change.change)
        at += every
    return changes


def _mark_sent(factory: sessionmaker[Session]) -> None:
    """What delivery does to the first message: a thread exists from now on."""
    with transaction(factory) as session:
        for row in session.scalars(select(Notification).where(Notification.state == "pending")):
            row.state, row.slack_ts = "sent", f"1700000000.{row.id:06d}"


def _spikes(factory: sessionmaker[Session]) -> list[Anomaly]:
    with factory() as session:
        return list(session.scalars(select(Anomaly).where(Anomaly.kind == "spike").order_by(Anomaly.id)))


@pytest.mark.timeout(900)
def test_a_twelve_hour_rise_is_one_anomaly_whose_thread_hears_of_its_end(
    factory: sessionmaker[Session], project: Project
) -> None:
    hours = WARM_HOURS + 12 + 2
    minute = np.arange(hours * 60)
    rise = (minute >= WARM_HOURS * 60) & (minute < (WARM_HOURS + 12) * 60)
    rates = np.where(rise, 0.04, 0.01)  # 1 % -> 4 % for 12 h
    _store_counts(factory, project.id, rates, seed=3)

    # a pass a minute, well past the 6 h at which the CUSUM's window used to re-key the excursion
    first = _passes(factory, project.id, RISE - timedelta(minutes=10), RISE + timedelta(minutes=30))
    assert first.count("created") == 1
    _mark_sent(factory)
    later = _passes(factory, project.id, RISE + timedelta(minutes=31), RISE + timedelta(hours=13))

    spikes = _spikes(factory)
    assert len(spikes) == 1, [a.key for a in spikes]
    spike = spikes[0]
    assert "created" not in later and later.count("ended") == 1
    ended = spike_ended_at(spike)
    assert ended is not None and abs(ended - (RISE + timedelta(hours=12))) <= timedelta(minutes=15)
    assert spike.sessions_affected > 0.03 * SESSIONS_PER_MINUTE * 12 * 60  # the whole excursion, not 6 h
    with factory() as session:
        replies = list(session.scalars(select(Notification).where(Notification.purpose == "update")))
        assert len([r for r in replies if r.state == "pending"]) >= 1
        content = alert_content_for(session, spike.id, "http://detector.test")
    text = update_blocks(content)["text"]
    assert f"Back to its usual rate since {ended:%H:%M} UTC" in text


@pytest.mark.timeout(900)
def test_a_second_later_excursion_is_a_second_anomaly(factory: sessionmaker[Session], project: Project) -> None:
    hours = WARM_HOURS + 10
    minute = np.arange(hours * 60)
    first = (minute >= WARM_HOURS * 60) & (minute < (WARM_HOURS + 2) * 60)
    second = (minute >= (WARM_HOURS + 6) * 60) & (minute < (WARM_HOURS + 8) * 60)
    rates = np.where(first | second, 0.05, 0.01)
    _store_counts(factory, project.id, rates, seed=4)

    changes = _passes(
        factory, project.id, RISE - timedelta(minutes=5), RISE + timedelta(hours=9), every=timedelta(minutes=3)
    )

    spikes = _spikes(factory)
    assert changes.count("created") == 2 and len(spikes) == 2
    began = [datetime.fromisoformat(a.details["spike"]["began"].replace("Z", "+00:00")) for a in spikes]
    assert abs(began[0] - RISE) <= timedelta(minutes=10)
    assert abs(began[1] - (RISE + timedelta(hours=6))) <= timedelta(minutes=10)
    assert all(spike_ended_at(a) is not None for a in spikes)
