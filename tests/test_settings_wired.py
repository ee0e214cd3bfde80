"""Every setting does what its name says (issue 16, item 12): event age at intake, raw event retention."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.config import Settings
from detector.intake.digest import digest_all
from detector.metrics import Metrics
from detector.runtime import build_worker_from_settings
from detector.store.models import Event, Project, Signature, SignatureMinute
from tests.e2e.test_workers_crash import fill_queue


def store_event(client: TestClient, project: Project, when: datetime) -> tuple[int, str]:
    body = {"event_id": uuid.uuid4().hex, "message": "boom", "platform": "javascript", "timestamp": when.timestamp()}
    answer = client.post(f"/api/{project.id}/store/?sentry_key={project.public_key}", json=body)
    return answer.status_code, answer.text


def test_intake_refuses_events_older_than_the_max_age(settings: Settings, project: Project) -> None:
    short = settings.model_copy(update={"max_event_age_days": 2.0})
    now = datetime.now(UTC)
    with TestClient(create_app(short)) as client:
        assert store_event(client, project, now - timedelta(days=1, hours=23))[0] == 200
        status, text = store_event(client, project, now - timedelta(days=2, hours=1))
    assert status == 400
    assert "too old" in text and "DETECTOR_MAX_EVENT_AGE_DAYS" in text and "2 days" in text


def test_the_retention_cannot_be_shorter_than_the_accepted_age() -> None:
    with pytest.raises(ValidationError, match="at least DETECTOR_MAX_EVENT_AGE_DAYS"):
        Settings(raw_event_retention_days=10, max_event_age_days=30)


def counts(factory: sessionmaker[Session], project: Project) -> tuple[int, int, int]:
    with factory() as session:
        events = session.scalar(select(func.count()).select_from(Event).where(Event.project_id == project.id))
        counted = session.scalar(
            select(func.coalesce(func.sum(SignatureMinute.events), 0)).where(SignatureMinute.project_id == project.id)
        )
        of_project = Signature.project_id == project.id
        signatures = session.scalar(select(func.count()).select_from(Signature).where(of_project))
    return int(events or 0), int(counted or 0), int(signatures or 0)


def test_the_worker_deletes_raw_events_past_the_retention_and_keeps_the_counts(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    now = datetime.now(UTC)
    old = fill_queue(factory, project.id, now - timedelta(days=12), events=30, minutes=3, sessions_per_minute=20)
    recent = fill_queue(factory, project.id, now - timedelta(hours=2), events=20, minutes=2, sessions_per_minute=20)
    digest_all(factory)
    before = counts(factory, project)
    assert before[0] == len(old) + len(recent) and before[1] == before[0]

    kept = settings.model_copy(update={"raw_event_retention_days": 10.0, "max_event_age_days": 10.0})
    worker = build_worker_from_settings(kept, Metrics(), factory)
    worker.run_due_jobs()  # every job is due at start, retention included
    with factory() as session:
        left = set(session.scalars(select(Event.event_id).where(Event.project_id == project.id)))
    assert left == recent
    _events, counted, signatures = counts(factory, project)
    assert (counted, signatures) == (before[1], before[2])  # what was counted stays

    worker.run_due_jobs()  # not due again for an hour: nothing else is touched
    assert counts(factory, project)[0] == len(recent)


def test_every_setting_is_read_by_the_code() -> None:
    """A setting nothing reads would promise the operator something that does not happen."""
    root = Path(__file__).resolve().parents[1]
    sources = [
        p.read_text()
        for folder in ("detector", "api")
        for p in (root / folder).rglob("*.py")
        if p != root / "detector" / "config.py"
    ]
    code = "\n".join(sources)
    unread = [name for name in Settings.model_fields if not re.search(rf"settings\.{name}\b", code)]
    assert unread == []
