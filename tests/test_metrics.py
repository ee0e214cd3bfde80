"""/metrics in `detector serve`'s default mode: the worker digests and detects in a child process, the API
answers the scrape, and every counter still tells the truth (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker

from detector.store.models import Project
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
