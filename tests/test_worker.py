"""The worker loop: a graceful stop on SIGTERM, and failures that are logged without stopping the digest,
the other projects' passes or alert delivery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

import detector.intake.digest as digest_module
import detector.scheduling as scheduling
from detector.config import Settings
from detector.metrics import Metrics
from detector.scheduling import DeliveryJob, DetectionJob
from detector.store import queue
from detector.store.db import transaction
from detector.store.models import DeadLetter, Event, Notification, Project, RawItem, SignatureMinute, WorkerLease
from detector.store.projects import create_project
from detector.store.queue import enqueue_items
from detector.worker import PeriodicJob, Worker
from tests.conftest import wait_for
from tests.e2e.test_workers_crash import fill_queue
from tests.test_notify import plain_anomaly, queue_new, webhook_settings


def counts(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    """(raw event items left, events stored, events counted in signature_minutes)."""
    with factory() as session:
        return (
            session.scalar(select(func.count(RawItem.id)).where(RawItem.item_type == "event")) or 0,
            session.scalar(select(func.count(Event.id))) or 0,
            session.scalar(select(func.coalesce(func.sum(SignatureMinute.events), 0))) or 0,
        )


def run_until_drained(worker: Worker, factory: sessionmaker[Session], *, timeout: float) -> threading.Thread:
    """Run `worker`'s loop in a thread until no raw event items are left (asserted), then stop it; the thread."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: counts(factory)[0] == 0, timeout=timeout), counts(factory)
    finally:
        stop.set()
        thread.join(5)
    return thread


def queued_events(factory: sessionmaker[Session], project: Project, events: int) -> int:
    deployed = (datetime.now(UTC) - timedelta(minutes=6)).replace(second=0, microsecond=0)
    ids = fill_queue(factory, project.id, deployed, events=events, minutes=5, sessions_per_minute=5000)
    return len(ids)


@pytest.mark.slow
def test_sigterm_lets_the_batch_in_progress_finish_then_exits(
    database_url: str, tmp_path: Path, factory: sessionmaker[Session], project: Project
) -> None:
    total = queued_events(factory, project, 4000)
    log = tmp_path / "worker.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")},
        "DETECTOR_DATABASE_URL": database_url,
        "DETECTOR_DIGEST_BATCH_SIZE": "200",
        "DETECTOR_DETECT_SCHEDULE": "off",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "detector.cli", "worker"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: counts(factory)[1] > 0, timeout=60, every=0.02), log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    left, stored, counted = counts(factory)
    assert left > 0, "stopped before the queue was empty, so the stop came mid-run"
    assert stored + left == total, "each event either digested or still queued"
    assert counted == stored, "no batch half-counted"
    assert "stopped" in log.read_text()


def test_stop_is_honoured_between_batches_within_the_loop(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    total = queued_events(factory, project, 1000)
    # fixed 100-item batches (no sizing to SQLite's write lock), so the three batches are the first 300 items
    settings = settings.model_copy(update={"digest_batch_size": 100, "digest_lock_target_ms": 0})
    worker = Worker(settings=settings, factory=factory, metrics=Metrics())
    stop = threading.Event()
    batches = 0
    digest = worker.digest_once

    def counting_digest():  # the third batch asks for a stop; the loop ends after it, not inside it
        nonlocal batches
        stats = digest()
        batches += 1
        if batches == 3:
            stop.set()
        return stats

    worker.digest_once = counting_digest  # type: ignore[method-assign]
    worker.run(stop)
    left, stored, counted = counts(factory)
    assert batches == 3
    # the first 300 items: two minutes' session items and 298 events, all of them fully counted
    assert stored == counted == 298
    assert left == total - 298


def test_sqlite_batches_are_sized_to_the_write_lock_target_and_postgresql_keeps_the_batch_size(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    total = queued_events(factory, project, 1000)
    # a target no batch can meet: on SQLite the next batches are the smallest allowed
    tight = settings.model_copy(
        update={"digest_batch_size": 300, "digest_min_batch_size": 20, "digest_lock_target_ms": 0.001}
    )
    worker = Worker(settings=tight, factory=factory, metrics=Metrics())
    assert worker.digest_once().items == 300, "the first batch is the largest"
    assert worker.batch_size == (20 if settings.is_sqlite else 300)
    assert worker.digest_once().items == worker.batch_size
    # a target every batch meets: back to the largest
    loose = tight.model_copy(update={"digest_lock_target_ms": 1e6})
    worker.settings = loose
    worker.digest_once()
    assert worker.batch_size == 300
    # the loop goes on without waiting after a full batch smaller than `digest_batch_size`, and the
    # queue drains exactly once
    worker = Worker(
        settings=tight.model_copy(update={"digest_interval_seconds": 30}), factory=factory, metrics=Metrics()
    )
    run_until_drained(worker, factory, timeout=60)
    left, stored, counted = counts(factory)
    assert (left, stored, counted) == (0, total, total)


def test_the_loop_goes_on_without_waiting_after_a_batch_cut_by_its_byte_budget(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    total = queued_events(factory, project, 40)
    # one item per batch (a batch takes at least one), and a wait between batches no test would sit out
    one_each = settings.model_copy(
        update={"digest_batch_size": 1000, "digest_batch_bytes": 1, "digest_interval_seconds": 30}
    )
    worker = Worker(settings=one_each, factory=factory, metrics=Metrics())
    first = worker.digest_once()
    assert (first.items, first.full) == (1, True)
    run_until_drained(worker, factory, timeout=20)
    assert counts(factory) == (0, total, total)


def test_a_failing_job_and_a_lost_database_connection_do_not_stop_the_digest(
    settings: Settings, factory: sessionmaker[Session], project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    total = queued_events(factory, project, 500)
    settings = settings.model_copy(update={"digest_batch_size": 100, "digest_interval_seconds": 0.01})
    calls = {"job": 0, "digest": 0}

    def broken_job() -> None:
        calls["job"] += 1
        raise RuntimeError("job exploded")

    worker = Worker(
        settings=settings, factory=factory, metrics=Metrics(), jobs=[PeriodicJob("broken", 0.0, broken_job)]
    )
    digest = worker.digest_once

    def flaky_digest():
        calls["digest"] += 1
        if calls["digest"] == 1:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        return digest()

    worker.digest_once = flaky_digest  # type: ignore[method-assign]
    thread = run_until_drained(worker, factory, timeout=20)
    assert not thread.is_alive(), "the loop ends promptly once asked"
    assert counts(factory)[1] == total
    assert calls["job"] >= 2, "the failing job keeps being scheduled"
    assert "worker job broken failed" in caplog.text
    assert "digest failed, retrying" in caplog.text


def test_one_projects_failing_pass_neither_starves_the_others_nor_holds_alerts_back(
    settings: Settings,
    factory: sessionmaker[Session],
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.alerts.slack_standin import SlackStandin

    with transaction(factory) as session:
        other = create_project(session, slug="other", org=settings.org)
        other_id = other.id
    real_pass = scheduling.run_project_pass
    seen: list[int] = []

    def pass_failing_for_web(factory, settings, *, project_id, at):  # type: ignore[no-untyped-def]
        seen.append(project_id)
        if project_id == project.id:
            raise ValueError("corrupt frame")
        return real_pass(factory, settings, project_id=project_id, at=at)

    monkeypatch.setattr(scheduling, "run_project_pass", pass_failing_for_web)
    queue_new(factory, plain_anomaly(factory, project, "a"), "webhook")
    metrics = Metrics()
    with SlackStandin() as slack:
        DetectionJob(factory, webhook_settings(settings, slack), metrics, owner="test-worker").run()
        DeliveryJob(factory, webhook_settings(settings, slack), metrics).run()
        assert len(slack.accepted_payloads()) == 1, "the alert queued before the failing pass goes out"
    assert seen == [project.id, other_id]
    assert metrics.detection_failures._value.get() == 1
    assert metrics.detection_passes._value.get() == 1
    assert "detection pass of project" in caplog.text
    with factory() as session:
        leases = {
            name: (owner, until)
            for name, owner, until in session.execute(
                select(WorkerLease.name, WorkerLease.owner, WorkerLease.lease_until)
            )
        }
        assert session.scalar(select(Notification.state)) == "sent"
    assert leases[f"detect:{project.id}"] == (None, None), "the failed pass gave its lease back"


def test_a_pass_does_not_release_a_lease_another_worker_took_over(
    settings: Settings, factory: sessionmaker[Session], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pass = scheduling.run_project_pass

    def slow_pass(factory, settings, *, project_id, at):  # type: ignore[no-untyped-def]
        # our lease ran out mid-pass and another worker claimed the project
        with transaction(factory) as session:
            session.get(WorkerLease, f"detect:{project_id}").owner = "other-worker"  # type: ignore[union-attr]
        return real_pass(factory, settings, project_id=project_id, at=at)

    monkeypatch.setattr(scheduling, "run_project_pass", slow_pass)
    DetectionJob(factory, settings.model_copy(update={"detect_interval_seconds": 0.0}), Metrics(), owner="me").run()
    with factory() as session:
        lease = session.get(WorkerLease, f"detect:{project.id}")
        assert lease is not None and lease.owner == "other-worker" and lease.lease_until is not None


def raw_event(project: Project, *, release: str = "web@1.2.0", value: str = "boom") -> dict[str, object]:
    event_id = uuid.uuid4().hex
    payload = {
        "event_id": event_id,
        "timestamp": datetime.now(UTC).timestamp(),
        "platform": "javascript",
        "release": release,
        "environment": "production",
        "exception": {"values": [{"type": "TypeError", "value": value}]},
    }
    return {
        "project_id": project.id,
        "item_type": "event",
        "event_id": event_id,
        "received_at": datetime.now(UTC),
        "payload": json.dumps(payload).encode(),
    }


def test_an_item_the_database_refuses_is_set_aside_instead_of_blocking_the_queue(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    # PostgreSQL refuses NUL in text; SQLite stores it. Either way the queue must drain.
    rows = [raw_event(project, value="first"), raw_event(project, release="web\x00@1.2.0"), raw_event(project)]
    with transaction(factory) as session:
        enqueue_items(session, rows)
    worker = Worker(settings=settings, factory=factory, metrics=Metrics())
    for _ in range(3):
        worker.digest_once()
    with factory() as session:
        stored = set(session.scalars(select(Event.event_id)))
        queued = session.scalar(select(func.count()).select_from(RawItem).where(queue.claimable()))
        refused = session.execute(select(DeadLetter.event_id, DeadLetter.attempts, DeadLetter.error)).all()
    assert {rows[0]["event_id"], rows[2]["event_id"]} <= stored, "the healthy events went through"
    assert queued == 0
    if settings.is_sqlite:
        assert refused == [] and rows[1]["event_id"] in stored
    else:
        ((event_id, attempts, error),) = refused
        assert event_id == rows[1]["event_id"] and attempts == queue.MAX_ATTEMPTS and "NUL" in error


def test_a_poison_item_costs_one_round_item_by_item_then_batches_resume(
    settings: Settings, factory: sessionmaker[Session], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [raw_event(project) for _ in range(10)]
    poison = rows[4]["event_id"]
    with transaction(factory) as session:
        enqueue_items(session, rows)
    real_insert = digest_module.counts.insert_events

    def refusing_insert(session, event_rows):  # type: ignore[no-untyped-def]
        if any(r["event_id"] == poison for r in event_rows):
            raise DataError("INSERT INTO events", {}, ValueError("value out of range"))
        return real_insert(session, event_rows)

    monkeypatch.setattr(digest_module.counts, "insert_events", refusing_insert)
    worker = Worker(settings=settings.model_copy(update={"digest_batch_size": 100}), factory=factory, metrics=Metrics())
    stats = worker.digest_once()
    assert stats.events == 9 and stats.failed == queue.MAX_ATTEMPTS
    assert stats.dead_lettered == 1 and worker.metrics.dead_lettered._value.get() == 1
    with factory() as session:
        assert session.scalar(select(func.count(Event.id))) == 9
        assert session.scalar(select(func.count()).select_from(RawItem).where(queue.claimable())) == 0
        (letter,) = session.execute(select(DeadLetter.event_id, DeadLetter.attempts, DeadLetter.error)).all()
    assert letter == (poison, queue.MAX_ATTEMPTS, "ValueError: value out of range")
    assert worker.digest_once().items == 0, "the set-aside item is not claimed again"
