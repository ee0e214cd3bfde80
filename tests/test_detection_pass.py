"""A detection pass end to end on stored data: intake → digest → deploy → pass → anomaly with suspects,
and its alert queued once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.config import Settings
from detector.deploys.service import record_deploy
from detector.detection import run_detection
from detector.intake.digest import digest_all
from detector.notify import enqueue_alerts
from detector.store.db import transaction
from detector.store.models import Notification, Project
from tests.support.traffic import post_minute


def test_seed_incident_is_flagged_with_its_deploy_and_alert_queued_once(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    rng = np.random.default_rng(5)
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    deploy_at = start + timedelta(minutes=40)
    with TestClient(create_app(settings)) as client:
        with transaction(factory) as session:
            record_deploy(
                session,
                project=session.get(Project, project.id),
                release="web@1.1.0",
                environment="production",
                date_started=None,
                date_finished=start,
                name=None,
                url=None,
                sha=None,
                source="api",
            )
        for m in range(40):
            post_minute(client, project, start + timedelta(minutes=m), "web@1.1.0", 30, 0.0, rng)
        with transaction(factory) as session:
            deploy = record_deploy(
                session,
                project=session.get(Project, project.id),
                release="web@1.2.0",
                environment="production",
                date_started=None,
                date_finished=deploy_at,
                name=None,
                url=None,
                sha=None,
                source="api",
            )
            deploy_id = deploy.id
        found = None
        for m in range(6):
            minute = deploy_at + timedelta(minutes=m)
            post_minute(client, project, minute, "web@1.2.0", 30, 0.08, rng)
            digest_all(factory)
            changes = run_detection(
                factory,
                project_id=project.id,
                at=minute + timedelta(seconds=59),
                record_alerts=lambda s, c: enqueue_alerts(s, c, channel="webhook"),
            )
            created = [c for c in changes if c.change == "created" and c.kind == "new_signature"]
            if created:
                found = (m, created[0])
                break
        assert found is not None, "the new TypeError was not flagged within 6 minutes"
        minutes_after, change = found
        assert minutes_after <= 2
        detail = client.get(
            f"/api/v1/projects/{project.slug}/anomalies/{change.anomaly_id}",
            headers={"Authorization": "Bearer " + _token(factory)},
        ).json()
        assert detail["deploy_id"] == deploy_id
        assert "map is not a function" in detail["title"]
        assert detail["sessions_affected"] >= 2
        assert detail["series"], "the anomaly carries its time series"
        # a later pass updates the same anomaly instead of opening another, and queues no second alert
        run_detection(
            factory,
            project_id=project.id,
            at=deploy_at + timedelta(minutes=minutes_after + 1),
            record_alerts=lambda s, c: enqueue_alerts(s, c, channel="webhook"),
        )
        with factory() as session:
            assert session.scalar(select(func.count()).select_from(Notification)) == 1


def _token(factory: sessionmaker[Session]) -> str:
    from detector.store.projects import create_token

    with transaction(factory) as session:
        return create_token(session)


def test_break_counts_come_from_earlier_top_suspects(factory: sessionmaker[Session], project: Project) -> None:
    from detector.detection import break_counts
    from detector.store.models import Anomaly, Commit, CommitFile

    now = datetime.now(UTC)
    with transaction(factory) as session:
        commit = Commit(project_id=project.id, sha="c" * 40, message="m", author_name="a", author_email="a@x")
        session.add(commit)
        session.flush()
        session.add_all(
            [
                CommitFile(commit_id=commit.id, path="src/api/entitlements.js", change_type="M"),
                CommitFile(commit_id=commit.id, path="src/styles.css", change_type="M"),
            ]
        )
        for i, state in enumerate(["resolved", "open", "muted"]):
            session.add(
                Anomaly(
                    project_id=project.id,
                    key=f"k{i}",
                    kind="new_signature",
                    state=state,
                    title="t",
                    release="r",
                    environment="production",
                    first_seen=now,
                    detected_at=now,
                    updated_at=now,
                    suspects=[{"sha": "c" * 40, "message": "m", "author": "a", "score": 1.0, "evidence": []}],
                )
            )
    with factory() as session:
        assert break_counts(session, project.id, before_anomaly_id=10_000) == {
            "src/api/entitlements.js": 2,
            "src/styles.css": 2,
        }
        assert break_counts(session, project.id, before_anomaly_id=1) == {}
