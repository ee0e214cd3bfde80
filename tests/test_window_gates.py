"""Evidence over a window: a bug hitting one session every few minutes is flagged once the deploy's window
holds enough distinct users and sessions (exact, from the stored events); one user's loop still is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.config import Settings
from detector.deploys.service import record_deploy
from detector.detection import load_frames, run_detection
from detector.intake.digest import digest_all
from detector.model import DetectorConfig, detect_anomalies
from detector.store.db import transaction
from detector.store.models import Project
from tests.support.traffic import error_item, post_minute


def deploy(factory: sessionmaker[Session], project: Project, release: str, at: datetime) -> None:
    with transaction(factory) as session:
        record_deploy(
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
        )


def post_events(client: TestClient, project: Project, items: list[bytes]) -> None:
    body = b"{}\n" + b"\n".join(items)
    assert client.post(f"/api/{project.id}/envelope/?sentry_key={project.public_key}", content=body).status_code == 200


def replay(settings: Settings, factory: sessionmaker[Session], project: Project, *, loop: bool) -> tuple[list, list]:
    """Two hours at 12 sessions a minute; after the deploy, one new TypeError every 4 minutes: from a new
    user each time, or (``loop``) from one user in one session."""
    rng = np.random.default_rng(3)
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    deploy_at = start + timedelta(hours=1)
    changes: list = []
    with TestClient(create_app(settings)) as client:
        deploy(factory, project, "web@1.1.0", start)
        for m in range(60):
            post_minute(client, project, start + timedelta(minutes=m), "web@1.1.0", 12, 0.0, rng)
        deploy(factory, project, "web@1.2.0", deploy_at)
        for m in range(60):
            minute = deploy_at + timedelta(minutes=m)
            post_minute(client, project, minute, "web@1.2.0", 12, 0.0, rng)
            if m % 4 == 1:
                post_events(client, project, [error_item("web@1.2.0", minute + timedelta(seconds=5), 7 if loop else m)])
            if m % 5 == 4:
                digest_all(factory)
                changes += run_detection(factory, project_id=project.id, at=minute + timedelta(seconds=59))
    with factory() as session:
        at = deploy_at + timedelta(minutes=59, seconds=59)
        config = DetectorConfig()
        frames = load_frames(session, project_id=project.id, at=at, lookback=timedelta(days=config.lookback_days))
        per_minute_only = detect_anomalies(**frames, at=at, config=config)
    return changes, per_minute_only


def test_a_bug_hitting_one_session_every_few_minutes_is_flagged_by_the_window_gate(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    changes, per_minute_only = replay(settings, factory, project, loop=False)
    assert [c.kind for c in changes if c.change == "created"] == ["new_signature"]
    # the per-minute gate alone (one affected session in any minute) never lets it through
    assert per_minute_only == []


def test_one_users_loop_is_not_flagged_by_the_window_gate(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    changes, _ = replay(settings, factory, project, loop=True)
    assert [c for c in changes if c.change == "created"] == []
