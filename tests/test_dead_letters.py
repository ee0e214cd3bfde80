"""An accepted item the digest keeps failing on is never lost (issue 18, item 1): after its last attempt it
moves to the dead letters with its error and payload, shows in `/healthz`, `/metrics` and
`detector queue dead-letters`, and `detector queue replay-dead-letters` puts it back in the queue.

The poison items are queued directly, as an older version's intake accepted them (today's intake
refuses them: tests/api/test_intake_storable.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from alembic import command
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.metrics import Metrics
from detector.store import queue
from detector.store.db import alembic_config, make_engine, make_sessionmaker, transaction, upgrade
from detector.store.models import DeadLetter, Event, Project, RawItem, SessionState
from detector.store.projects import create_project
from detector.worker import Worker
from tests.conftest import BACKEND, LiveServer, wait_for


def session_row(project_id: int, errors: int) -> dict[str, object]:
    payload = {
        "sid": uuid.uuid4().hex,
        "status": "exited",
        "errors": errors,
        "started": datetime.now(UTC).isoformat(),
        "attrs": {"release": "web@1.0.0"},
    }
    return {
        "project_id": project_id,
        "item_type": "session",
        "event_id": None,
        "received_at": datetime.now(UTC),
        "payload": json.dumps(payload).encode(),
    }


def event_row(project_id: int, *, release: str = "web@1.0.0") -> dict[str, object]:
    event_id = uuid.uuid4().hex
    payload = {"event_id": event_id, "release": release, "message": "boom", "timestamp": datetime.now(UTC).timestamp()}
    return {
        "project_id": project_id,
        "item_type": "event",
        "event_id": event_id,
        "received_at": datetime.now(UTC),
        "payload": json.dumps(payload).encode(),
    }


def queued(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(RawItem).where(queue.claimable())) or 0


def letters(factory: sessionmaker[Session]) -> list[DeadLetter]:
    with factory() as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    env["DETECTOR_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_poison_item_moves_to_the_dead_letters_after_its_last_attempt(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    # a count past 32 bits fails the digest on both databases; a NUL in the release fails on PostgreSQL
    rows = [event_row(project.id), session_row(project.id, 2**70), event_row(project.id, release="web\x00@1")]
    with transaction(factory) as session:
        queue.enqueue_items(session, rows)
    worker = Worker(settings=settings, factory=factory, metrics=Metrics())
    for _ in range(queue.MAX_ATTEMPTS + 1):
        worker.digest_once()
    assert queued(factory) == 0, "nothing is left in the queue, claimable or not"
    found = letters(factory)
    poison = rows[1:] if BACKEND == "postgresql" else rows[1:2]
    assert [letter.payload for letter in found] == [row["payload"] for row in poison]
    assert all(letter.attempts == queue.MAX_ATTEMPTS for letter in found)
    assert "errors is 1180591620717411303424, over the largest storable count" in found[0].error
    if BACKEND == "postgresql":
        assert "NUL" in found[1].error and found[1].event_id == rows[2]["event_id"]
    assert worker.metrics.dead_lettered._value.get() == len(poison)
    with factory() as session:
        assert session.scalar(select(func.count(Event.id))) == (1 if BACKEND == "postgresql" else 2)


def test_dead_letters_show_in_healthz_metrics_and_the_cli_and_replay_back_to_the_queue(
    database_url: str, tmp_path: Path, project: Project, factory: sessionmaker[Session]
) -> None:
    server = LiveServer(database_url, tmp_path).start()
    try:
        with transaction(factory) as session:
            queue.enqueue_items(session, [session_row(project.id, 2**70), event_row(project.id)])
        assert wait_for(lambda: len(letters(factory)) == 1, timeout=60), server.log()[-2000:]
        health = httpx.get(server.url + "/healthz", timeout=10)
        assert health.status_code == 200, "a dead letter is reported, not an outage"
        assert health.json()["dead_letters"] == 1
        metrics = httpx.get(server.url + "/metrics", timeout=10).text
        assert "detector_dead_letters 1.0" in metrics
        assert "detector_dead_lettered_items_total 1.0" in metrics, "the worker process's counter is seen"

        listed = cli("queue", "dead-letters", "--json", database_url=database_url)
        assert listed.returncode == 0, listed.stderr
        (entry,) = json.loads(listed.stdout)
        assert entry["item_type"] == "session" and entry["attempts"] == queue.MAX_ATTEMPTS
        assert "over the largest storable count" in entry["error"]

        refused = cli("queue", "replay-dead-letters", database_url=database_url)
        assert refused.returncode == 2 and "--all" in refused.stderr
        replayed = cli("queue", "replay-dead-letters", str(entry["id"]), database_url=database_url)
        assert replayed.returncode == 0 and "replayed 1 dead letter" in replayed.stdout
        # still poison: queued anew (a new queue id), digested from scratch, back in the dead letters
        assert wait_for(lambda: [d.raw_item_id for d in letters(factory)] not in ([], [entry["raw_item_id"]]), 60)
        (again,) = letters(factory)
        assert again.attempts == queue.MAX_ATTEMPTS and queued(factory) == 0

        dropped = cli("queue", "drop-dead-letters", "--all", database_url=database_url)
        assert dropped.returncode == 0 and "dropped 1 dead letter" in dropped.stdout
        assert httpx.get(server.url + "/healthz", timeout=10).json()["dead_letters"] == 0
    finally:
        server.stop()


def test_items_spent_before_the_upgrade_become_dead_letters_and_replay_into_counts(database_url: str) -> None:
    # A database as the revision before dead letters left it, with an item that had used all its attempts:
    # never claimed, never seen.
    engine = make_engine(database_url)
    factory = make_sessionmaker(engine)
    try:
        with engine.begin() as connection:  # the fixture's database is at head: back to before 0007
            cfg = alembic_config(database_url)
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0007-1")
        with transaction(factory) as session:
            project = create_project(session, slug="old", org="default")
            row = event_row(project.id)
            queue.enqueue_items(session, [row])
            session.execute(RawItem.__table__.update().values(attempts=queue.MAX_ATTEMPTS, last_error="DiskFull"))
        upgrade(database_url)
        assert queued(factory) == 0
        (letter,) = letters(factory)
        assert (letter.event_id, letter.error, letter.payload) == (row["event_id"], "DiskFull", row["payload"])
        replayed = cli("queue", "replay-dead-letters", "--all", database_url=database_url)
        assert replayed.returncode == 0, replayed.stderr
        assert letters(factory) == [] and queued(factory) == 1
        worker = Worker(settings=Settings(database_url=database_url), factory=factory, metrics=Metrics())
        assert worker.digest_once().events == 1
        with factory() as session:
            assert session.scalar(select(Event.event_id)) == row["event_id"]
            assert session.scalar(select(func.count(SessionState.id))) == 0
    finally:
        engine.dispose()
