"""Database faults (issue 18, item 3): while PostgreSQL restarts or the disk under SQLite is full, intake
and the query API answer 503 with `Retry-After` (never a plain 500), `/healthz` says why, nothing
acknowledged is lost, and the service recovers by itself once the database is back.

Everything is real: `detector serve` on loopback; a PostgreSQL cluster of the test's own, stopped and
started with pg_ctl (the shared one is left alone); a tmpfs filled to its last byte. Both kinds run in
the SQLite and the PostgreSQL runs of the suite (each fault belongs to one database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api.state import ProjectKeyCache
from detector.intake.accept import ProjectKey
from detector.store.db import make_engine, make_sessionmaker, transaction, upgrade
from detector.store.models import Event, Project
from detector.store.projects import create_project, create_token
from tests.conftest import LiveServer, wait_for
from tests.support.faults import ThrowawayPostgres, TinyDisk, store_event, wait_until

FAST_HEARTBEAT = {"DETECTOR_WORKER_HEARTBEAT_SECONDS": "0.3", "DETECTOR_WORKER_STALE_AFTER_SECONDS": "1.5"}
RETRY_AFTER = "7"


def digested(factory: sessionmaker[Session], event_ids: set[str]) -> int:
    with factory() as session:
        return session.scalar(select(func.count(Event.id)).where(Event.event_id.in_(event_ids))) or 0


def seed(url: str) -> tuple[sessionmaker[Session], Project, str]:
    upgrade(url)
    factory = make_sessionmaker(make_engine(url))
    with transaction(factory) as session:
        project = create_project(session, slug="web", org="default")
        token = create_token(session, label="faults")
    return factory, project, token


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == RETRY_AFTER
    assert "the database is unavailable" in answer.json()["detail"]


@pytest.fixture
def cluster() -> Iterator[ThrowawayPostgres]:
    postgres = ThrowawayPostgres()
    reason = postgres.available
    if reason:
        pytest.skip(reason)
    postgres.create()
    yield postgres
    postgres.destroy()


def test_a_postgresql_restart_answers_503_with_retry_after_and_recovers_by_itself(
    cluster: ThrowawayPostgres, tmp_path: Path
) -> None:
    factory, project, token = seed(cluster.url)
    env = {**FAST_HEARTBEAT, "DETECTOR_DATABASE_RETRY_AFTER_SECONDS": RETRY_AFTER}
    server = LiveServer(cluster.url, tmp_path, extra_env=env).start()
    auth = {"Authorization": f"Bearer {token}"}
    acknowledged: set[str] = set()
    try:
        before = store_event(server.url, project, "checkout failed before the restart")
        assert before.status_code == 200, before.text
        acknowledged.add(before.json()["id"])
        assert wait_for(lambda: digested(factory, acknowledged) == 1, timeout=30)
        factory.kw["bind"].dispose()  # this test's connections are not the server's to lose

        cluster.stop()
        assert_unavailable(store_event(server.url, project, "checkout failed while PostgreSQL is down"))
        assert_unavailable(httpx.get(f"{server.url}/api/v1/projects", headers=auth, timeout=10))
        assert_unavailable(httpx.get(f"{server.url}/api/v1/projects/web/anomalies", headers=auth, timeout=10))
        down = httpx.get(f"{server.url}/healthz", timeout=10)
        assert down.status_code == 503 and "the database cannot be read" in down.json()["detail"], down.text

        cluster.start()

        def intake_answers() -> bool:
            answer = store_event(server.url, project, "checkout failed after the restart")
            if answer.status_code == 200:
                acknowledged.add(answer.json()["id"])
                return True
            assert_unavailable(answer)  # never a 500 on the way back
            return False

        assert wait_until(intake_answers, timeout=30) is not None
        projects = httpx.get(f"{server.url}/api/v1/projects", headers=auth, timeout=10)
        assert projects.status_code == 200 and [p["slug"] for p in projects.json()["items"]] == ["web"]
        assert wait_for(lambda: digested(factory, acknowledged) == len(acknowledged), timeout=60), server.log()[-3000:]
        assert wait_for(lambda: httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200, timeout=30)
    finally:
        server.stop()
        factory.kw["bind"].dispose()


@pytest.fixture
def tiny_disk() -> Iterator[TinyDisk]:
    disk = TinyDisk(size_mb=24)
    reason = disk.mount()
    if reason:
        disk.unmount()
        pytest.skip(reason)
    yield disk
    disk.unmount()


def test_a_full_disk_under_sqlite_answers_503_with_retry_after_loses_nothing_and_recovers(
    tiny_disk: TinyDisk, tmp_path: Path
) -> None:
    url = f"sqlite:///{tiny_disk.path / 'detector.db'}"
    factory, project, _token = seed(url)
    env = {
        **FAST_HEARTBEAT,
        "DETECTOR_DATABASE_RETRY_AFTER_SECONDS": RETRY_AFTER,
        "DETECTOR_HEALTH_MIN_FREE_DISK_MB": "0.5",
    }
    server = LiveServer(url, tmp_path, extra_env=env).start()
    acknowledged: set[str] = set()
    try:
        assert wait_for(lambda: httpx.get(f"{server.url}/healthz", timeout=10).json().get("workers_alive") == 1)
        ballast = tiny_disk.fill()
        assert tiny_disk.free_bytes() == 0
        refused = None
        # SQLite may still fit a few commits into pages its files already hold: those are stored, and
        # acknowledged; the first one that needs a new page is refused with 503.
        for index in range(2000):
            answer = store_event(server.url, project, f"checkout failed on a full disk {index}", padding=16_000)
            if answer.status_code == 200:
                acknowledged.add(answer.json()["id"])
                continue
            refused = answer
            break
        assert refused is not None, "a full disk took 2,000 events of 16 KB"
        assert_unavailable(refused)
        health = httpx.get(f"{server.url}/healthz", timeout=10)
        assert health.status_code == 503, health.text
        assert "the disk holding the database has 0.0 MB free" in health.json()["detail"]
        assert "intake cannot write the queue: database or disk is full" in health.json()["detail"]

        ballast.unlink()

        def intake_answers() -> bool:
            answer = store_event(server.url, project, "checkout failed once the disk has room again")
            if answer.status_code == 200:
                acknowledged.add(answer.json()["id"])
                return True
            assert_unavailable(answer)
            return False

        assert wait_until(intake_answers, timeout=30) is not None
        assert wait_for(lambda: digested(factory, acknowledged) == len(acknowledged), timeout=60), server.log()[-3000:]
        assert wait_for(lambda: httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200, timeout=30)
    finally:
        server.stop()
        factory.kw["bind"].dispose()


def test_project_keys_read_before_a_restart_stay_usable_while_the_database_is_down(
    cluster: ThrowawayPostgres,
) -> None:
    factory, project, _token = seed(cluster.url)
    keys = ProjectKeyCache(factory, ttl=0.0)  # every lookup reloads: the outage shows at once
    try:
        assert keys.get(project.id) == ProjectKey(project.id, project.public_key, None)
        cluster.stop()
        # a known key still opens intake (the commit, not the lookup, decides whether the queue takes it)
        assert keys.get(project.id) == ProjectKey(project.id, project.public_key, None)
        with pytest.raises(OperationalError):
            keys.get(project.id + 1)  # an unknown one cannot be told from a new project: the outage shows
        cluster.start()
        assert keys.get(project.id) is not None
    finally:
        factory.kw["bind"].dispose()
