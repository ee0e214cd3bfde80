"""`detector demo`: the seed incident replayed through the real pipeline is caught and alerted once."""

from __future__ import annotations

import random
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.demo import run_demo, scenario
from detector.demo.repo import DemoRepoError, reset_demo_folder
from detector.demo.runner import demo_folder, free_slug
from detector.demo.terminal import for_terminal
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
    assert f"Caught {result.caught_minutes:.0f} min after the deploy of web@1.2.0" in output
    assert "instrumentation" in output

    # the deploy verdicts: the healthy release turned healthy during its hour, the bad one failing within
    # minutes, when `detector deploy verify` would have exited 1
    assert result.good_verdict == "healthy" and result.bad_verdict == "failing"
    assert result.failing_minutes is not None and result.failing_minutes <= 3
    assert "verdict of web@1.1.0: healthy; `detector deploy verify` exits 0" in output
    assert "verdict of web@1.2.0: failing; `detector deploy verify` exits 1" in output
    assert f"web@1.2.0 failing {result.failing_minutes:.0f} min after its deploy" in output

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


def test_free_slug_skips_taken_ones(factory: sessionmaker[Session], settings: Settings) -> None:
    with transaction(factory) as session:
        assert free_slug(session) == "shop"
        create_project(session, slug="shop", org=settings.org)
        create_project(session, slug="shop-2", org=settings.org)
        assert free_slug(session) == "shop-3"


def test_the_demo_folder_sits_beside_its_database_and_only_its_own_is_reset(tmp_path: Path) -> None:
    sqlite = Settings(database_url=f"sqlite:///{tmp_path / 'data' / 'my.db'}")
    assert demo_folder(sqlite) == tmp_path / "data" / "my-demo"
    assert demo_folder(sqlite, tmp_path / "elsewhere") == tmp_path / "elsewhere" / "detector-demo"

    folder = tmp_path / "detector-demo"
    repo = reset_demo_folder(folder)
    repo.mkdir()
    (repo / "left-over").write_text("x")
    assert reset_demo_folder(folder) == repo and not repo.exists()  # the second run starts clean
    # git leaves the folder out of `git status` wherever it is
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"

    theirs = tmp_path / "someone-elses"
    (theirs / "repo").mkdir(parents=True)
    with pytest.raises(DemoRepoError, match="was not written by `detector demo`"):
        reset_demo_folder(theirs)
    assert (theirs / "repo").is_dir()


def test_for_terminal_renders_slack_markup() -> None:
    text = (
        ":rotating_light: TypeError: <x>.map is not a function\n"
        "=====================================================\n"
        "<http://127.0.0.1:8000/api/v1/projects/shop/anomalies/3|Anomaly 3 in the API>  <https://example.com/a>\n"
        ":unknown_code: detected 12:30:45 UTC in `release_error_rate` *bold* _quiet_\n"
    )
    shown = for_terminal(text)
    assert shown.splitlines() == [
        "🚨 TypeError: <x>.map is not a function",
        "=" * len("🚨 TypeError: <x>.map is not a function"),
        "Anomaly 3 in the API (http://127.0.0.1:8000/api/v1/projects/shop/anomalies/3)  https://example.com/a",
        "detected 12:30:45 UTC in `release_error_rate` bold quiet",
    ]


def test_the_demo_speaks_terminal_and_a_second_run_resets_the_first(
    settings: Settings, factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    workdir = None if settings.is_sqlite else tmp_path / "work"  # PostgreSQL has no file to sit beside
    first_lines: list[str] = []
    first = run_demo(settings, workdir=workdir, echo=first_lines.append)
    lines: list[str] = []
    second = run_demo(settings, workdir=workdir, echo=lines.append)
    output = "\n".join(lines)

    # reset, not duplicated: one demo project, one demo repository, in the same place
    assert second.project_slug == first.project_slug == "shop"
    assert second.repo_path == first.repo_path and second.repo_path.is_dir()
    assert [p.name for p in second.repo_path.parent.parent.iterdir() if "demo" in p.name] == ["detector-demo"]
    with factory() as session:
        assert session.scalars(select(Project.slug)).all() == ["shop"]
        project_id = session.scalars(select(Project.id)).one()
        assert sorted(session.scalars(select(Deploy.release).where(Deploy.project_id == project_id))) == [
            "web@1.1.0",
            "web@1.2.0",
        ]
        opened = session.scalars(select(Anomaly).where(Anomaly.project_id == project_id)).all()
    assert list(cwd.iterdir()) == []  # nothing left in the current directory

    # Slack's markup is rendered for the terminal
    assert ":rotating_light:" not in output and "<http" not in output and "|Anomaly" not in output
    # the suspects are shown once, in the alert
    evidence = second.suspects[0]["evidence"][0]
    assert output.count(evidence) == 1
    # one clock: the line of the pass that caught it, the alert and the summary agree
    caught_line = next(line for line in lines if "caught it" in line)
    minutes = round(second.caught_minutes)
    with factory() as session:
        detected = session.get(Anomaly, second.anomaly_id).detected_at  # type: ignore[union-attr]
    assert caught_line.startswith(f"[{detected:%H:%M}] +{minutes} min:")
    assert f"detected {detected:%Y-%m-%d %H:%M} UTC" in output and f"caught {minutes} min after the deploy" in output
    # the summary accounts for every anomaly the demo opened
    summary = output[output.index("The demo opened") :]
    assert summary.startswith(f"The demo opened {len(opened)} anomal")
    for anomaly in opened:
        assert f"#{anomaly.id} {anomaly.kind}: {anomaly.title}" in summary


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
