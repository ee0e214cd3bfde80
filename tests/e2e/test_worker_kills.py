"""One `detector worker` SIGKILLed again and again at random moments while it digests, and restarted:
every event and every session aggregate is counted exactly once, and the queue ends empty.

On SQLite this is the promise of the queue's own file (detector/store/queue.py): the digest's rows and
the marks of what it digested commit together in the main file, and the items are deleted from the
queue's file after, so a kill between the two repeats nothing (session aggregates are added, not
upserted: counting one twice would show). On PostgreSQL, items are deleted in the digest's transaction.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.store.models import Event, Project, QueueDigested, RawItem, SessionMinute, SignatureMinute
from tests.conftest import wait_for
from tests.e2e.test_workers_crash import fill_queue

pytestmark = pytest.mark.slow

EVENTS = 6_000
MINUTES = 6
SESSIONS_PER_MINUTE = 3_000  # more than the events of a minute (each errors one session)
KILLS = 6


def start_worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")},
        "DETECTOR_DATABASE_URL": database_url,
        "DETECTOR_DIGEST_BATCH_SIZE": "200",
        "DETECTOR_DIGEST_INTERVAL_SECONDS": "0.05",
        "DETECTOR_DETECT_SCHEDULE": "off",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "detector.cli", "worker"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def state(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        return {
            "queued": session.scalar(select(func.count(RawItem.id))) or 0,
            "marks": session.scalar(select(func.count(QueueDigested.id))) or 0,
            "events": session.scalar(select(func.count(Event.id))) or 0,
            "distinct": session.scalar(select(func.count(func.distinct(Event.event_id)))) or 0,
            "counted": session.scalar(select(func.coalesce(func.sum(SignatureMinute.events), 0))) or 0,
            "sessions": session.scalar(select(func.coalesce(func.sum(SessionMinute.started), 0))) or 0,
        }


def test_a_worker_killed_again_and_again_counts_everything_once(
    database_url: str, tmp_path: Path, factory: sessionmaker[Session], project: Project
) -> None:
    deployed = (datetime.now(UTC) - timedelta(minutes=MINUTES + 1)).replace(second=0, microsecond=0)
    ids = fill_queue(
        factory, project.id, deployed, events=EVENTS, minutes=MINUTES, sessions_per_minute=SESSIONS_PER_MINUTE
    )
    log = tmp_path / "worker.log"
    rng = random.Random(7)
    kills = 0
    worker = start_worker(database_url, log)
    try:
        while kills < KILLS:
            stored = state(factory)["events"]
            if stored >= EVENTS:
                break
            # Kill once it is digesting again (it stored more since the last kill), at a random moment.
            assert wait_for(lambda s=stored: state(factory)["events"] > s, timeout=60, every=0.01), log.read_text()
            time.sleep(rng.uniform(0.0, 0.3))
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
            kills += 1
            worker = start_worker(database_url, log)
        # Empty, and (SQLite) the last batch's marks cleared by the next claim that finds nothing.
        assert wait_for(lambda: state(factory)["queued"] == state(factory)["marks"] == 0, timeout=180), log.read_text()
    finally:
        worker.terminate()
        worker.wait(30)
    assert kills >= 3, "killed while it digested, several times"
    final = state(factory)
    with factory() as session:
        assert set(session.scalars(select(Event.event_id))) == ids
    assert final == {
        "queued": 0,
        "marks": 0,
        "events": EVENTS,
        "distinct": EVENTS,
        "counted": EVENTS,
        "sessions": SESSIONS_PER_MINUTE * MINUTES,
    }
