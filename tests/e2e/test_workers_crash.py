"""Two `detector worker` processes on one PostgreSQL database, one of them SIGKILLed mid-batch: every
event is counted exactly once, and the incident in the data reaches Slack exactly once.

The queue's promise under test (detector/store/queue.py): a batch is claimed, digested and deleted in
one transaction, and concurrent workers skip each other's rows (`FOR UPDATE SKIP LOCKED`), so a worker
that dies mid-batch loses nothing (its transaction rolls back) and repeats nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from detector.demo import scenario
from detector.deploys.service import record_deploy
from detector.store.db import transaction
from detector.store.models import Anomaly, Event, Notification, Project, RawItem, SignatureMinute
from detector.store.queue import enqueue_items
from tests.alerts.slack_standin import SlackStandin
from tests.conftest import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(postgresql_database_url: str) -> str:
    # several worker processes share work only on PostgreSQL (row leases with SKIP LOCKED); SQLite runs
    # one worker beside the API, so this runs on PostgreSQL in the SQLite run too
    return postgresql_database_url


EVENTS = 20_000
MINUTES = 10
SESSIONS_PER_MINUTE = 30_000
BATCH = 250
RELEASE = "web@1.2.0"


def event_payload(event_id: str, when: datetime, user: int) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "timestamp": when.timestamp(),
            "platform": "javascript",
            "release": RELEASE,
            "environment": "production",
            "user": {"id": f"u{user}"},
            "request": {"url": "https://shop.example.com/billing"},
            "exception": {
                "values": [
                    {
                        "type": "TypeError",
                        "value": scenario.INCIDENT_VALUE,
                        "mechanism": {"type": "onunhandledrejection", "handled": False},
                        "stacktrace": {"frames": [dict(f) for f in scenario.INCIDENT_FRAMES]},
                    }
                ]
            },
        }
    ).encode()


def sessions_payload(minute: datetime, started: int, errored: int) -> bytes:
    return json.dumps(
        {
            "attrs": {"release": RELEASE, "environment": "production"},
            "aggregates": [{"started": minute.isoformat(), "exited": started - errored, "errored": errored}],
        }
    ).encode()


def fill_queue(
    factory: sessionmaker[Session],
    project_id: int,
    deployed: datetime,
    *,
    events: int = EVENTS,
    minutes: int = MINUTES,
    sessions_per_minute: int = SESSIONS_PER_MINUTE,
) -> set[str]:
    """Queue `events` incident events (the seed TypeError on `RELEASE`, distinct users) spread over the
    `minutes` whole minutes after `deployed`, with each minute's sessions; returns the event ids."""
    now = datetime.now(UTC)
    ids: set[str] = set()
    rows: list[dict[str, object]] = []
    per_minute = events // minutes
    for m in range(minutes):
        minute = (deployed + timedelta(minutes=m + 1)).replace(second=0, microsecond=0)
        rows.append(
            {
                "project_id": project_id,
                "item_type": "sessions",
                "event_id": None,
                "received_at": now,
                "payload": sessions_payload(minute, sessions_per_minute, per_minute),
            }
        )
        for n in range(per_minute):
            event_id = uuid.uuid4().hex
            ids.add(event_id)
            when = minute + timedelta(seconds=(n % 59) + 0.5)
            rows.append(
                {
                    "project_id": project_id,
                    "item_type": "event",
                    "event_id": event_id,
                    "received_at": now,
                    "payload": event_payload(event_id, when, m * per_minute + n),
                }
            )
    with transaction(factory) as session:
        for start in range(0, len(rows), 2000):
            enqueue_items(session, rows[start : start + 2000])
    return ids


@dataclass
class DigestWatch:
    """Samples pg_stat_activity: which digest transactions (by start time) each worker was seen in."""

    url: str
    seen: dict[str, set[datetime]] = field(default_factory=lambda: {"worker-a": set(), "worker-b": set()})
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            while not self.stop.is_set():
                for name, started in conn.execute(
                    text(
                        "SELECT application_name, xact_start FROM pg_stat_activity "
                        "WHERE application_name IN ('worker-a', 'worker-b') AND xact_start IS NOT NULL "
                        "AND (query ILIKE '%raw_items%' OR query ILIKE '%INSERT INTO events%' "
                        "OR query ILIKE '%signature_minutes%')"
                    )
                ):
                    self.seen[name].add(started)
                time.sleep(0.005)
        engine.dispose()

    def in_digest(self, name: str) -> bool:
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                return bool(
                    conn.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
                            "AND state IN ('active', 'idle in transaction') AND xact_start IS NOT NULL "
                            "AND query NOT ILIKE '%worker_leases%' AND query NOT ILIKE '%notifications%'"
                        ),
                        {"name": name},
                    )
                )
        finally:
            engine.dispose()


def start_worker(name: str, database_url: str, slack: SlackStandin, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")},
        "DETECTOR_DATABASE_URL": database_url,
        "DETECTOR_DIGEST_BATCH_SIZE": str(BATCH),
        "DETECTOR_DIGEST_INTERVAL_SECONDS": "0.05",
        "DETECTOR_DETECT_INTERVAL_SECONDS": "1",
        "DETECTOR_LEASE_SECONDS": "10",
        "DETECTOR_SLACK_WEBHOOK_URL": slack.webhook_url,
        "PGAPPNAME": name,  # libpq names the connections, so pg_stat_activity tells the workers apart
    }
    return subprocess.Popen(
        [sys.executable, "-m", "detector.cli", "worker"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _count(factory: sessionmaker[Session], *what: Any) -> Any:
    with factory() as session:
        return session.execute(select(*what)).one()


def test_a_worker_killed_mid_batch_loses_and_repeats_nothing(
    database_url: str, tmp_path: Path, factory: sessionmaker[Session], project: Project
) -> None:
    deployed = (datetime.now(UTC) - timedelta(minutes=MINUTES + 1)).replace(second=0, microsecond=0)
    with transaction(factory) as session:
        record_deploy(
            session,
            project=session.get(Project, project.id),
            release=RELEASE,
            environment="production",
            date_started=None,
            date_finished=deployed,
            name=None,
            url=None,
            sha=None,
            source="api",
        )
    ids = fill_queue(factory, project.id, deployed)
    assert len(ids) == EVENTS

    watch = DigestWatch(database_url)
    watcher = threading.Thread(target=watch.run, daemon=True)
    watcher.start()
    workers: dict[str, subprocess.Popen[bytes]] = {}
    with SlackStandin() as slack:
        try:
            for name in ("worker-a", "worker-b"):
                workers[name] = start_worker(name, database_url, slack, tmp_path / f"{name}.log")

            def a_mid_batch_after_both_worked() -> bool:
                return (
                    len(watch.seen["worker-a"]) >= 3
                    and len(watch.seen["worker-b"]) >= 3
                    # some batches committed (the transactions seen may be metrics reads, on a loaded machine)
                    and _count(factory, func.count(RawItem.id))[0] < EVENTS
                    and watch.in_digest("worker-a")
                )

            assert wait_for(a_mid_batch_after_both_worked, timeout=120, every=0.01), _logs(tmp_path)
            os.kill(workers["worker-a"].pid, signal.SIGKILL)
            workers["worker-a"].wait(10)
            (left_at_kill,) = _count(factory, func.count(RawItem.id))
            assert 0 < left_at_kill < EVENTS, "killed while work was left, after some was done"

            assert wait_for(lambda: _count(factory, func.count(RawItem.id))[0] == 0, timeout=180), _logs(tmp_path)
            assert wait_for(lambda: slack.accepted_payloads(), timeout=60), _logs(tmp_path)
            time.sleep(3)  # more passes by the survivor: still one alert
        finally:
            watch.stop.set()
            for proc in workers.values():
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)
        payloads = slack.accepted_payloads()

    events, distinct = _count(factory, func.count(Event.id), func.count(func.distinct(Event.event_id)))
    (counted,) = _count(factory, func.coalesce(func.sum(SignatureMinute.events), 0))
    with factory() as session:
        stored_ids = set(session.scalars(select(Event.event_id)))
        anomalies = list(session.scalars(select(Anomaly)))
        notifications = list(session.scalars(select(Notification)))
    assert stored_ids == ids, "every enqueued event stored"
    assert events == distinct == EVENTS, "and stored once"
    assert counted == EVENTS, "signature_minutes count each event once"
    assert len(watch.seen["worker-a"]) >= 3 and len(watch.seen["worker-b"]) >= 3, "both workers digested"

    incident = [a for a in anomalies if a.kind == "new_signature"]
    assert len(incident) == 1, [(a.kind, a.title) for a in anomalies]
    assert len(payloads) == 1, [p.get("text") for p in payloads]
    assert scenario.INCIDENT_TITLE_PART in json.dumps(payloads[0])
    assert [(n.anomaly_id, n.state) for n in notifications] == [(incident[0].id, "sent")]


def _logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(tmp_path.glob("worker-*.log")))
