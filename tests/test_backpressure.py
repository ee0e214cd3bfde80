"""Backpressure (issue 18, item 5): the intake queue is bounded in items and bytes; past the bound intake
answers 429 with `Retry-After` (as Sentry does over quota) and keeps every event it acknowledged; after a
drain the worker gives the queue's space back to the file system. On the test's database (SQLite or
PostgreSQL): the app in process for the bound itself, and `detector serve --no-worker` with a separate
`detector worker` for a worker that is behind, then drains."""

from __future__ import annotations

import secrets
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.config import Settings
from detector.intake.digest import digest_all
from detector.store.models import Event, Project, RawItem
from detector.store.queue import queue_file_bytes
from tests.conftest import LiveServer, wait_for


def event_body(message: str, padding: int = 0) -> dict[str, object]:
    body: dict[str, object] = {"event_id": uuid.uuid4().hex, "message": message, "level": "error"}
    if padding:
        body["extra"] = {"padding": secrets.token_urlsafe(padding)[:padding]}  # incompressible, as TOAST goes
    return body


def post(client: TestClient | httpx.Client, project: Project, body: dict[str, object]) -> httpx.Response:
    return client.post(f"/api/{project.id}/store/?sentry_key={project.public_key}", json=body)


def queued_event_ids(factory: sessionmaker[Session]) -> set[str]:
    with factory() as session:
        return set(session.scalars(select(RawItem.event_id)))


def stored(factory: sessionmaker[Session], ids: set[str]) -> int:
    with factory() as session:
        return session.scalar(select(func.count(Event.id)).where(Event.event_id.in_(ids))) or 0


def assert_queue_full(answer: httpx.Response, retry_after: int) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["Retry-After"] == str(retry_after)
    # every category, as relay's quota answers: sessions wait as well as errors
    assert answer.headers["X-Sentry-Rate-Limits"] == f"{retry_after}::organization"
    assert "the intake queue is full" in answer.json()["detail"]


def test_past_the_item_bound_intake_answers_429_and_keeps_what_it_acknowledged(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    # the queue is read once, at start: from then on the process counts what it takes in, to the item
    bounded = settings.model_copy(
        update={"queue_max_items": 40, "queue_bound_refresh_seconds": 3600, "queue_full_retry_after_seconds": 9}
    )
    with TestClient(create_app(bounded)) as client:
        answers = [post(client, project, event_body(f"checkout failed {n}")) for n in range(60)]
    assert [a.status_code for a in answers] == [200] * 40 + [429] * 20
    assert_queue_full(answers[40], 9)
    acknowledged = {a.json()["id"] for a in answers[:40]}
    assert queued_event_ids(factory) == acknowledged, "every acknowledged event is queued, no refused one"

    digest_all(factory)  # the worker catches up: the queue's next read lets events in again
    with TestClient(create_app(bounded)) as client:
        assert post(client, project, event_body("after the drain")).status_code == 200
    assert stored(factory, acknowledged) == 40


def test_past_the_byte_bound_intake_answers_429(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    bounded = settings.model_copy(update={"queue_max_bytes": 100_000, "queue_bound_refresh_seconds": 3600})
    with TestClient(create_app(bounded)) as client:
        answers = [post(client, project, event_body(f"checkout failed {n}", padding=10_000)) for n in range(20)]
    statuses = [a.status_code for a in answers]
    accepted = statuses.count(200)
    assert 8 <= accepted <= 10 and statuses == [200] * accepted + [429] * (20 - accepted), statuses
    assert_queue_full(answers[accepted], bounded.queue_full_retry_after_seconds)
    assert queued_event_ids(factory) == {a.json()["id"] for a in answers[:accepted]}


def test_a_worker_behind_a_burst_drains_the_bounded_queue_and_shrinks_its_file(
    database_url: str, tmp_path: Path, project: Project, factory: sessionmaker[Session]
) -> None:
    bound, concurrency = 300, 8
    env = {
        "DETECTOR_QUEUE_MAX_ITEMS": str(bound),
        "DETECTOR_QUEUE_BOUND_REFRESH_SECONDS": "0.1",
        "DETECTOR_QUEUE_COMPACT_MIN_MB": "0.5",
    }
    server = LiveServer(database_url, tmp_path, extra_env=env, extra_args=["--no-worker"]).start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:

            def send(n: int) -> httpx.Response:
                return post(client, project, event_body(f"checkout failed in the burst {n}", padding=8_000))

            with ThreadPoolExecutor(concurrency) as pool:
                answers = list(pool.map(send, range(2 * bound)))
        statuses = [a.status_code for a in answers]
        assert set(statuses) == {200, 429}, statuses
        acknowledged = {a.json()["id"] for a in answers if a.status_code == 200}
        # never past the bound; a little short of it while a read of the queue counts a commit twice
        assert bound - concurrency <= len(acknowledged) <= bound
        assert_queue_full(next(a for a in answers if a.status_code == 429), 10)
        assert queued_event_ids(factory) == acknowledged
        engine = factory.kw["bind"]
        full = queue_file_bytes(engine)
        assert full > 2 * bound * 8_000 // 2, f"the queue holds {full} bytes"

        worker = subprocess.Popen(
            [sys.executable, "-m", "detector.cli", "worker"],
            env=server.env,
            stdout=(tmp_path / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        assert wait_for(lambda: stored(factory, acknowledged) == len(acknowledged), timeout=120), (
            tmp_path / "worker.log"
        ).read_text()
        engine.dispose()  # PostgreSQL's VACUUM truncates only when no other session holds the table
        assert wait_for(lambda: queue_file_bytes(engine) < full / 4, timeout=30), (
            f"the queue still takes {queue_file_bytes(engine)} of {full} bytes after the drain"
        )
        assert wait_for(lambda: "queue compacted after a drain" in (tmp_path / "worker.log").read_text(), timeout=10)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert post(client, project, event_body("after the drain")).status_code == 200
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        server.stop()
