"""Pull mode in a real `detector serve`: configured from the environment, pulling from the stand-in."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from detector.store.db import transaction
from detector.store.deploys import find_release
from detector.store.models import Event, Signature
from tests.conftest import LiveServer, wait_for
from tests.sources.sentry_standin import SentryStandin

pytestmark = pytest.mark.slow


@pytest.fixture
def sentry(fixtures_dir: Path) -> Iterator[SentryStandin]:
    with SentryStandin.from_fixtures(fixtures_dir, page_size=1) as standin:
        yield standin


def test_detector_serve_pulls_events_and_releases_from_sentry(
    database_url: str, tmp_path: Path, factory: sessionmaker[Session], sentry: SentryStandin
) -> None:
    # the documented events are from 2020, before the first sweep's window: one arrives now
    recent = copy.deepcopy(next(e for e in sentry.events if e["eventID"] == "9999aaaaca8b46d797c23c6077c6ff01"))
    recent["eventID"] = "e" * 32
    recent["dateCreated"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    sentry.add_event(recent)

    server = LiveServer(
        database_url,
        tmp_path,
        extra_env={
            "DETECTOR_SENTRY_PULL_BASE_URL": sentry.base_url,
            "DETECTOR_SENTRY_PULL_TOKEN": sentry.token,
            "DETECTOR_SENTRY_PULL_ORG": sentry.org,
            "DETECTOR_SENTRY_PULL_PROJECTS": json.dumps(list(sentry.projects)),
        },
    ).start()
    try:

        def digested() -> Event | None:
            with transaction(factory) as session:
                return session.scalar(select(Event).where(Event.event_id == "e" * 32))

        event = wait_for(digested, timeout=20)
        assert event is not None, server.log()[-3000:]
        with transaction(factory) as session:
            signature = session.get(Signature, event.signature_id)
            assert signature is not None and signature.type == "ForbiddenError"
            assert (event.release, event.environment) == ("b65bc521378269d3eaefdc964f8ef56621414943", "prod")

        def released() -> bool:
            with transaction(factory) as session:
                return find_release(session, org="default", version="frontend@1.0.0") is not None

        assert wait_for(released, timeout=10), server.log()[-3000:]
        # the 2020 events are outside the first sweep's window (14 days back)
        with transaction(factory) as session:
            assert [e.event_id for e in session.scalars(select(Event))] == ["e" * 32]
        assert all(r.status == 200 for r in sentry.requests)
    finally:
        server.stop()
