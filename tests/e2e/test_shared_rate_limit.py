"""The rate limit is one limit for all API processes (issue 18, item 8): `detector serve --processes 2`
shares the port between two processes, and a project limited to N events a minute gets N accepted in all,
not N per process; what was refused is not stored, what was accepted is."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.store.models import Event, Project
from tests.conftest import LiveServer, wait_for

LIMIT = 30
SENT = 80


def test_two_api_processes_share_one_rate_limit(
    database_url: str, tmp_path: Path, factory: sessionmaker[Session], project: Project
) -> None:
    server = LiveServer(
        database_url,
        tmp_path,
        extra_env={"DETECTOR_DEFAULT_RATE_LIMIT_PER_MINUTE": str(LIMIT)},
        extra_args=["--processes", "2"],
    ).start()
    url = f"{server.url}/api/{project.id}/store/?sentry_key={project.public_key}"

    def send(_n: int) -> httpx.Response:
        body = {"event_id": uuid.uuid4().hex, "message": "boom", "platform": "javascript"}
        # a connection per request: the kernel spreads connections, not requests, over the two processes
        return httpx.post(url, json=body, headers={"Connection": "close"}, timeout=30)

    try:
        second = datetime.now(UTC).second
        if second > 35:  # the whole burst inside one minute's window
            time.sleep(61 - second)
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(send, range(SENT)))
        statuses = [a.status_code for a in answers]

        def stored() -> int:
            with factory() as session:
                return int(session.scalar(select(func.count()).select_from(Event)) or 0)

        settled = wait_for(lambda: stored() == LIMIT, timeout=60)
        extra = stored()
    finally:
        server.stop()
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == SENT - LIMIT, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "error" in refused.headers["x-sentry-rate-limits"]
    assert settled and extra == LIMIT  # every accepted event digested, no refused one
