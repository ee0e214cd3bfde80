"""Every setting does what its name says (issue 16, item 12; issue 18, item 9): event age at intake, future
timestamps, raw event retention and its schedule."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
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
from detector.store.models import Event, Project, RawItem, Signature, SignatureMinute
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


def queued(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(RawItem)) or 0)


def envelope(project: Project, *items: dict[str, object]) -> bytes:
    lines = [orjson.dumps({"dsn": f"http://{project.public_key}@127.0.0.1/{project.id}"})]
    for item in items:
        payload = orjson.dumps(item)
        lines += [orjson.dumps({"type": "event", "length": len(payload)}), payload]
    return b"\n".join(lines)


def test_an_envelope_with_an_event_from_2001_is_refused_whole_and_queues_nothing(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    now = datetime.now(UTC)
    fresh = {"event_id": uuid.uuid4().hex, "message": "fresh", "timestamp": now.timestamp()}
    old = {"event_id": uuid.uuid4().hex, "message": "old", "timestamp": "2001-09-09T01:46:40Z"}
    with TestClient(create_app(settings)) as client:
        answer = client.post(f"/api/{project.id}/envelope/", content=envelope(project, fresh, old))
    assert answer.status_code == 400
    assert "too old" in answer.text and "2001-09-09" in answer.text and "90 days" in answer.text
    assert queued(factory) == 0  # the fresh event of the refused envelope is not half-kept


def test_an_event_stamped_in_the_future_is_accepted_and_counted_at_its_receipt_as_relay_does(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    """Relay re-times an event more than 60 s ahead of its receipt (a client clock running fast) to the
    receipt; counted at its own time it would sit in a minute that has not happened yet."""
    with TestClient(create_app(settings)) as client:
        before = datetime.now(UTC)
        status, _text = store_event(client, project, before + timedelta(days=3))
        after = datetime.now(UTC)
    assert status == 200
    digest_all(factory)
    with factory() as session:
        minute = session.scalar(select(Event.minute).where(Event.project_id == project.id))
    assert minute is not None
    assert before.replace(second=0, microsecond=0) <= minute.astimezone(UTC) <= after


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


def test_the_retention_runs_again_after_its_interval(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    now = datetime.now(UTC)
    ages = {"raw_event_retention_days": 10.0, "max_event_age_days": 10.0}
    often = settings.model_copy(update={**ages, "raw_event_retention_interval_seconds": 0.5})
    worker = build_worker_from_settings(often, Metrics(), factory)
    worker.run_due_jobs()  # the first run, at start, finds nothing to delete
    old = fill_queue(factory, project.id, now - timedelta(days=12), events=10, minutes=1, sessions_per_minute=5)
    digest_all(factory)
    worker.run_due_jobs()  # within the interval: the old events stay
    assert counts(factory, project)[0] == len(old)
    time.sleep(0.6)
    worker.run_due_jobs()
    assert counts(factory, project)[0] == 0


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
