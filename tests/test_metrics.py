"""/metrics in `detector serve`'s default mode: the worker digests and detects in a child process, the API
answers the scrape, and every counter still tells the truth (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.intake.digest import digest_all
from detector.store.models import Event, Project, SessionMinute, Signature, SignatureMinute
from detector.store.retention import apply_event_retention
from detector.store.size import measure_store
from tests.conftest import LiveServer, wait_for
from tests.e2e.test_workers_crash import fill_queue


def sample(text: str, name: str) -> float:
    """The sum of a metric's samples (all label sets) in Prometheus text."""
    values = re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, flags=re.M)
    return sum(float(v) for v in values)


def test_counters_include_the_worker_process_in_the_default_mode(
    database_url: str, tmp_path: Path, factory: sessionmaker[Session], project: Project
) -> None:
    deployed = (datetime.now(UTC) - timedelta(minutes=3)).replace(second=0, microsecond=0)
    queued = fill_queue(factory, project.id, deployed, events=40, minutes=2, sessions_per_minute=50)
    server = LiveServer(database_url, tmp_path, extra_env={"DETECTOR_DETECT_INTERVAL_SECONDS": "0.5"}).start()
    try:
        stored = httpx.post(
            f"{server.url}/api/{project.id}/store/?sentry_key={project.public_key}",
            json={"event_id": uuid.uuid4().hex, "message": "hello", "platform": "javascript", "release": "web@1"},
            timeout=10,
        )
        assert stored.status_code == 200, stored.text

        def scraped() -> str | None:
            text = httpx.get(server.url + "/metrics", timeout=10).text
            done = sample(text, "detector_digested_events_total") >= len(queued) + 1
            return text if done and sample(text, "detector_detection_passes_total") >= 1 else None

        text = wait_for(scraped, timeout=60, every=0.5)
    finally:
        server.stop()
    assert text, "the worker's digest and passes never showed in the API's /metrics"
    assert sample(text, "detector_digested_events_total") == len(queued) + 1  # worker process, counted once
    assert sample(text, "detector_intake_items_total") >= 1  # API process
    assert sample(text, "detector_queue_depth") == 0  # a gauge set at scrape time, one value
    assert len(re.findall(r"^detector_queue_depth(?:\{[^}]*\})? ", text, flags=re.M)) == 1


def store_rows(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_metrics_report_the_store_size_rows_per_table_and_bytes(
    database_url: str, tmp_path: Path, factory: sessionmaker[Session], project: Project
) -> None:
    queued = fill_queue(factory, project.id, datetime.now(UTC) - timedelta(minutes=5), events=30, minutes=2)
    server = LiveServer(database_url, tmp_path).start()
    try:
        assert wait_for(lambda: store_rows(factory, Event) == len(queued), timeout=60), "never digested"
        text = httpx.get(server.url + "/metrics", timeout=30).text
    finally:
        server.stop()
    assert sample(text, 'detector_store_rows{table="events"}') == len(queued)
    assert sample(text, 'detector_store_rows{table="signatures"}') == store_rows(factory, Signature)
    assert sample(text, 'detector_store_rows{table="signature_minutes"}') == store_rows(factory, SignatureMinute)
    assert sample(text, 'detector_store_rows{table="session_minutes"}') == store_rows(factory, SessionMinute) > 0
    on_disk = sample(text, "detector_store_bytes")
    if factory.kw["bind"].dialect.name == "sqlite":
        database = Path(factory.kw["bind"].url.database)
        assert on_disk >= database.stat().st_size > 0  # the main file, plus the queue's and the WALs
    else:
        assert on_disk > sample(text, 'detector_store_table_bytes{table="events"}') > 0


def test_the_store_size_shrinks_when_retention_deletes_raw_events(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    now = datetime.now(UTC)
    old = fill_queue(factory, project.id, now - timedelta(days=12), events=20, minutes=2)
    recent = fill_queue(factory, project.id, now - timedelta(hours=1), events=10, minutes=1)
    digest_all(factory)
    with factory() as session:
        before = measure_store(session)
    assert before.rows["events"] == len(old) + len(recent)
    apply_event_retention(factory, cutoff=now - timedelta(days=10))
    with factory() as session:
        after = measure_store(session)
    assert after.rows["events"] == len(recent)
    assert after.rows["signature_minutes"] == before.rows["signature_minutes"]  # what was counted stays
