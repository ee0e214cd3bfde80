"""One incident, one alert: an unfixed bug follows its anomaly across later deploys (still present, then a
likely fix) instead of being re-blamed on each of them; real intake, digest and passes on a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.alerts.blocks import follow_up_blocks
from detector.config import Settings
from detector.deploys.service import record_deploy
from detector.detection import run_detection
from detector.intake.digest import digest_all
from detector.notify import alert_content_for, enqueue_alerts
from detector.store.db import transaction
from detector.store.models import Anomaly, Notification, Project
from tests.support.traffic import post_minute


def deploy(factory: sessionmaker[Session], project: Project, release: str, at: datetime) -> int:
    with transaction(factory) as session:
        return record_deploy(
            session,
            project=session.get(Project, project.id),
            release=release,
            environment="production",
            date_started=None,
            date_finished=at,
            name=None,
            url=None,
            sha=None,
            source="api",
        ).id


def test_an_unfixed_bug_follows_its_anomaly_across_deploys_until_a_release_fixes_it(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    rng = np.random.default_rng(11)
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    # web@1.2.0 brings the bug, web@1.3.0 keeps it, web@1.4.0 fixes it; 25 minutes each.
    timeline = [("web@1.1.0", 0.0), ("web@1.2.0", 0.08), ("web@1.3.0", 0.08), ("web@1.4.0", 0.0)]
    deploy_ids = {}
    changes = []
    with TestClient(create_app(settings)) as client:
        for index, (release, share) in enumerate(timeline):
            deploy_at = start + timedelta(minutes=25 * index)
            deploy_ids[release] = deploy(factory, project, release, deploy_at)
            for m in range(25):
                minute = deploy_at + timedelta(minutes=m)
                post_minute(client, project, minute, release, 30, share, rng)
                if index == 0 or m % 3:
                    continue
                digest_all(factory)
                changes += run_detection(
                    factory,
                    project_id=project.id,
                    at=minute + timedelta(seconds=59),
                    record_alerts=lambda s, c: enqueue_alerts(s, c, channel="bot"),
                )
    with factory() as session:
        anomalies = list(session.scalars(select(Anomaly).where(Anomaly.project_id == project.id)))
        about_bug = [a for a in anomalies if "map is not a function" in a.title]
        assert [(a.kind, a.deploy_id) for a in about_bug] == [("new_signature", deploy_ids["web@1.2.0"])]
        bug = about_bug[0]
        releases = bug.details["releases"]
        assert releases["web@1.3.0"]["status"] == "present" and releases["web@1.3.0"]["same_rate"]
        assert releases["web@1.4.0"]["status"] == "absent" and releases["web@1.4.0"]["sessions"] >= 58
        assert bug.details["likely_fixed_in"] == "web@1.4.0"
        purposes = list(
            session.scalars(
                select(Notification.purpose).where(Notification.anomaly_id == bug.id).order_by(Notification.id)
            )
        )
        # one alert, grown updates in its thread, and one reply per later release's verdict
        assert purposes[0] == "new" and purposes.count("new") == 1 and purposes.count("follow") == 2
        text = follow_up_blocks(alert_content_for(session, bug.id, "http://127.0.0.1:8000"))["text"]
        assert "Not seen in web@1.4.0 since its deploy" in text and "likely fix" in text
    assert [c.change for c in changes if c.anomaly_id == bug.id].count("created") == 1


def test_a_backend_outage_spanning_two_deploys_is_one_spike_blamed_on_neither(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    rng = np.random.default_rng(12)
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    outage = (start + timedelta(minutes=70), start + timedelta(minutes=110))
    releases = [
        ("web@1.1.0", start),
        ("web@1.2.0", start + timedelta(minutes=40)),
        ("web@1.3.0", start + timedelta(minutes=90)),
    ]
    with TestClient(create_app(settings)) as client:
        for index, (release, deploy_at) in enumerate(releases):
            deploy(factory, project, release, deploy_at)
            end = releases[index + 1][1] if index + 1 < len(releases) else start + timedelta(minutes=130)
            minute = deploy_at
            while minute < end:
                failing = outage[0] <= minute < outage[1]
                post_minute(client, project, minute, release, 40, 0.1 if failing else 0.0, rng)
                if index:  # old tabs on the release before
                    post_minute(client, project, minute, releases[index - 1][0], 3, 0.1 if failing else 0.0, rng)
                if index and minute.minute % 3 == 0:
                    digest_all(factory)
                    run_detection(factory, project_id=project.id, at=minute + timedelta(seconds=59))
                minute += timedelta(minutes=1)
    with factory() as session:
        about = session.execute(
            select(Anomaly.kind, Anomaly.deploy_id).where(
                Anomaly.project_id == project.id, Anomaly.title.contains("map is not a function")
            )
        ).all()
    assert [tuple(a) for a in about] == [("spike", None)]
