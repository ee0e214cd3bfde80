"""`detector demo`: the seed incident replayed through the real pipeline is caught and alerted once."""

from __future__ import annotations

import random
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.demo import run_demo, scenario
from detector.demo.repo import free_directory
from detector.demo.runner import free_slug
from detector.store.db import transaction
from detector.store.models import Anomaly, Deploy, Notification, Project
from detector.store.projects import create_project
from tests.alerts.slack_standin import SlackStandin


def test_demo_catches_the_incident_and_posts_one_block_kit_alert(
    settings: Settings, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    lines: list[str] = []
    with SlackStandin() as slack:
        configured = settings.model_copy(update={"slack_webhook_url": slack.webhook_url})
        result = run_demo(configured, workdir=tmp_path, echo=lines.append)
        payloads = slack.accepted_payloads()

    assert result.anomaly_kind == "new_signature"
    assert "map is not a function" in result.anomaly_title
    assert 0 < result.caught_minutes <= 3
    assert "instrumentation" in result.suspects[0]["message"]
    assert result.suspects[0]["author"].startswith("Dana Whitfield")
    assert result.suspects[0]["evidence"]

    assert result.slack_sent == 1
    assert len(payloads) == 1
    blocks = payloads[0]["blocks"]
    assert isinstance(blocks, list) and blocks
    assert result.suspects[0]["sha"][:7] in str(payloads[0])

    output = "\n".join(lines)
    assert "map is not a function" in output
    assert f"Caught {result.caught_minutes:.1f} min after the deploy of web@1.2.0" in output
    assert "instrumentation" in output

    # the database is left explorable: the project, its two deploys, one sent notification
    with factory() as session:
        project = session.get(Project, result.project_id)
        assert project is not None and project.slug == "shop"
        assert project.repo_path == str(result.repo_path)
        releases = session.scalars(select(Deploy.release).where(Deploy.project_id == project.id)).all()
        assert sorted(releases) == ["web@1.1.0", "web@1.2.0"]
        sent = session.scalar(select(func.count()).select_from(Notification).where(Notification.state == "sent"))
        assert sent == 1
        # the demo opens exactly the anomaly it is about, nothing on its healthy release
        anomalies = session.execute(select(Anomaly.kind, Anomaly.release).where(Anomaly.project_id == project.id)).all()
        assert [tuple(a) for a in anomalies] == [("new_signature", "web@1.2.0")]
    assert result.other_anomalies == []

    # the repository is a real one with the incident's commit
    log = subprocess.run(
        ["git", "log", "--format=%an|%s"], cwd=result.repo_path, capture_output=True, text=True, check=True
    ).stdout
    assert "Dana Whitfield|Add instrumentation and improve error logging" in log
    assert "entitlements.map(" in (result.repo_path / "src/features/PaidFeatures.js").read_text().splitlines()[3]


def test_free_slug_and_directory_never_reuse_existing_ones(
    factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    with transaction(factory) as session:
        assert free_slug(session) == "shop"
        create_project(session, slug="shop", org=settings.org)
        create_project(session, slug="shop-2", org=settings.org)
        assert free_slug(session) == "shop-3"
    (tmp_path / "detector-demo-repo").mkdir()
    assert free_directory(tmp_path / "detector-demo-repo") == tmp_path / "detector-demo-repo-2"
    assert free_directory(tmp_path / "other") == tmp_path / "other"


def test_minute_traffic_is_seeded_and_only_the_bad_release_fails_on_billing() -> None:
    minute = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    a = scenario.minute_traffic(
        random.Random(1),
        minute,
        sessions=2000,
        releases=(("web@1.2.0", 0.5), ("web@1.1.0", 0.5)),
        incident_release="web@1.2.0",
    )
    b = scenario.minute_traffic(
        random.Random(1),
        minute,
        sessions=2000,
        releases=(("web@1.2.0", 0.5), ("web@1.1.0", 0.5)),
        incident_release="web@1.2.0",
    )
    assert a.envelopes == b.envelopes
    assert sum(a.sessions_by_release.values()) == 2000
    # about 5% of the bad release's sessions (20% on /billing x 25%)
    assert 0.025 < a.incident_events / a.sessions_by_release["web@1.2.0"] < 0.08
    incident = [e for e in a.envelopes if b"map is not a function" in e]
    assert len(incident) == a.incident_events
    assert all(b'"release":"web@1.2.0"' in e and b'"url":"https://shop.example.com/billing"' in e for e in incident)
    assert all(b'"lineno":4' in e and b"renderPaidFeatures" in e for e in incident)
    assert scenario.bad_release_share(0) < scenario.bad_release_share(5) <= 1
