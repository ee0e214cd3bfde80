"""Pull mode end to end: releases, commits and deploys through the deploy service; events into the digest."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.intake.digest import digest_all
from detector.sources.sentry_pull import (
    PullReport,
    RetryPolicy,
    SentryApi,
    SentryPull,
    pull_project_releases,
    releases_cursor_key,
)
from detector.store.db import transaction
from detector.store.deploys import deploy_commit_ids, find_release, release_commit_ids
from detector.store.models import Commit, Deploy, Event, Project, PullCursor, Signature
from detector.store.projects import create_project
from tests.sources.sentry_standin import SentryStandin

RELEASE = "frontend@1.0.0"
COMMIT_SHA = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2"


@pytest.fixture
def sentry(fixtures_dir: Path) -> Iterator[SentryStandin]:
    with SentryStandin.from_fixtures(fixtures_dir, page_size=1) as standin:
        yield standin


@pytest.fixture
def documented_deploy(sentry: SentryStandin) -> dict[str, Any]:
    """The deploy object Sentry documents (the event example's release.lastDeploy; the list example is null)."""
    full = next(e for e in sentry.events if e["eventID"] == "9999aaaaca8b46d797c23c6077c6ff01")
    return copy.deepcopy(full["release"]["lastDeploy"])


@pytest.fixture
def sentry_project(factory: sessionmaker[Session], sentry: SentryStandin, settings: Any) -> Project:
    with transaction(factory) as session:
        return create_project(session, slug=sentry.projects[0], org=settings.org)


def pull_releases(factory: sessionmaker[Session], sentry: SentryStandin, project: Project) -> PullReport:
    with SentryApi(sentry.base_url, sentry.token, retry=RetryPolicy(max_attempts=2), sleep=lambda _: None) as api:
        return pull_project_releases(
            factory,
            api,
            org=sentry.org,
            sentry_project=sentry.projects[0],
            project_id=project.id,
            clock=lambda: datetime(2024, 2, 1, tzinfo=UTC),
        )


def test_release_commits_and_deploy_are_recorded_through_the_deploy_service(
    factory: sessionmaker[Session],
    sentry: SentryStandin,
    sentry_project: Project,
    documented_deploy: dict[str, Any],
    settings: Any,
) -> None:
    documented_deploy["dateFinished"] = "2024-01-02T10:00:00Z"  # after the release was created
    sentry.add_deploy(RELEASE, documented_deploy)

    report = pull_releases(factory, sentry, sentry_project)
    assert (report.releases, report.deploys, report.releases_error) == (1, 1, None)

    with transaction(factory) as session:
        release = find_release(session, org=settings.org, version=RELEASE)
        assert release is not None and release.date_created == datetime(2024, 1, 1, tzinfo=UTC)
        commits = session.scalars(
            select(Commit).where(
                Commit.id.in_(release_commit_ids(session, release_id=release.id, project_id=sentry_project.id))
            )
        ).all()
        assert [(c.sha, c.message) for c in commits] == [(COMMIT_SHA, "fix: handle empty release version")]
        (deploy,) = session.scalars(select(Deploy)).all()
        assert (deploy.project_id, deploy.release, deploy.environment, deploy.source) == (
            sentry_project.id,
            RELEASE,
            "prod",
            "sentry-pull",
        )
        assert deploy.name == "b65bc521378269d3eaefdc964f8ef56621414943 to prod"
        assert deploy.dedupe_key == "sentry:6883490"
        assert deploy.deployed_at == datetime(2024, 1, 2, 10, 0, tzinfo=UTC)
        # the release's commits not yet deployed to prod are what this deploy brought
        assert deploy_commit_ids(session, deploy_id=deploy.id) == [commits[0].id]


def test_unchanged_releases_are_not_fetched_again_and_new_deploys_are_added_once(
    factory: sessionmaker[Session],
    sentry: SentryStandin,
    sentry_project: Project,
    documented_deploy: dict[str, Any],
) -> None:
    sentry.add_deploy(RELEASE, documented_deploy)
    pull_releases(factory, sentry, sentry_project)

    sentry.requests.clear()
    again = pull_releases(factory, sentry, sentry_project)
    assert (again.releases, again.deploys) == (0, 0)
    assert [r.path for r in sentry.requests] == ["/api/0/organizations/hellboy-meowmeow/releases/"]

    staging = {**documented_deploy, "id": "6883491", "environment": "staging", "name": "to staging"}
    sentry.add_deploy(RELEASE, staging)
    later = pull_releases(factory, sentry, sentry_project)
    assert (later.releases, later.deploys) == (1, 2)  # both listed again; the known one is not duplicated
    with transaction(factory) as session:
        deploys = session.scalars(select(Deploy).order_by(Deploy.id)).all()
    assert [(d.environment, d.dedupe_key) for d in deploys] == [
        ("prod", "sentry:6883490"),
        ("staging", "sentry:6883491"),
    ]


def test_release_paths_quote_the_version(
    factory: sessionmaker[Session], sentry: SentryStandin, sentry_project: Project
) -> None:
    pull_releases(factory, sentry, sentry_project)
    assert "/api/0/organizations/hellboy-meowmeow/releases/frontend%401.0.0/commits/" in [
        r.path for r in sentry.requests
    ]


def test_releases_of_other_projects_are_left_alone(
    factory: sessionmaker[Session], sentry: SentryStandin, settings: Any
) -> None:
    with transaction(factory) as session:
        other = create_project(session, slug="other", org=settings.org)
    sentry.projects = ("other",)
    report = pull_releases(factory, sentry, other)
    assert report.releases == 0
    with transaction(factory) as session:
        assert find_release(session, org=settings.org, version=RELEASE) is None


def test_a_malformed_release_page_is_recorded_and_retried_next_run(
    factory: sessionmaker[Session], sentry: SentryStandin, sentry_project: Project
) -> None:
    sentry.malformed(path_contains="/commits/")
    report = pull_releases(factory, sentry, sentry_project)
    assert report.releases_error is not None and "not JSON" in report.releases_error
    with transaction(factory) as session:
        row = session.get(PullCursor, releases_cursor_key(sentry.org, sentry.projects[0]))
        assert row is not None and row.state["last_error"] == report.releases_error
        assert RELEASE not in row.state.get("known", {})

    retry = pull_releases(factory, sentry, sentry_project)
    assert (retry.releases, retry.releases_error) == (1, None)


def test_pulled_events_are_digested_into_events_with_signatures(
    factory: sessionmaker[Session], sentry: SentryStandin, settings: Any
) -> None:
    runner = SentryPull(
        factory=factory,
        base_url=sentry.base_url,
        token=sentry.token,
        org=sentry.org,
        projects=["sentry"],
        local_org=settings.org,
        initial_lookback=timedelta(days=365 * 10),
        sleep=lambda _: None,
        clock=lambda: datetime(2024, 2, 1, tzinfo=UTC),
    )
    (report,) = runner.run()
    assert (report.events_stored, report.releases, report.error, report.releases_error) == (2, 1, None, None)

    stats = digest_all(factory)
    assert (stats.events, stats.failed) == (2, 0)
    with transaction(factory) as session:
        events = {e.event_id: e for e in session.scalars(select(Event))}
        signatures = {s.id: s for s in session.scalars(select(Signature))}
    assert set(events) == {"9999aaaaca8b46d797c23c6077c6ff01", "9fac2ceed9344f2bbfdd1fdacb0ed9b1"}
    full = events["9999aaaaca8b46d797c23c6077c6ff01"]
    assert (full.release, full.environment, full.browser, full.os) == (
        "b65bc521378269d3eaefdc964f8ef56621414943",
        "prod",
        "Chrome 83",
        "Windows 10",
    )
    assert full.timestamp == datetime(2020, 6, 17, 22, 26, 56, 98086, tzinfo=UTC)
    assert signatures[full.signature_id].type == "ForbiddenError"
    listed = events["9fac2ceed9344f2bbfdd1fdacb0ed9b1"]
    assert signatures[listed.signature_id].type == "ExampleException"
    assert full.signature_id != listed.signature_id

    # a second run finds nothing new, and digesting again adds nothing
    (again,) = runner.run()
    assert again.events_stored == 0
    digest_all(factory)
    with transaction(factory) as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 2


def test_a_release_of_two_pulled_projects_keeps_its_commits_for_both(
    factory: sessionmaker[Session], sentry: SentryStandin, sentry_project: Project, settings: Any
) -> None:
    with transaction(factory) as session:
        other = create_project(session, slug="admin", org=settings.org)
    sentry.projects = ("sentry", "admin")
    for release in sentry.releases:
        release["projects"].append({"id": 2, "slug": "admin", "name": "admin"})

    pull_releases(factory, sentry, sentry_project)
    with SentryApi(sentry.base_url, sentry.token, sleep=lambda _: None) as api:
        report = pull_project_releases(factory, api, org=sentry.org, sentry_project="admin", project_id=other.id)
    assert report.releases == 1

    with transaction(factory) as session:
        release = find_release(session, org=settings.org, version=RELEASE)
        assert release is not None
        for project in (sentry_project, other):
            ids = release_commit_ids(session, release_id=release.id, project_id=project.id)
            assert [session.get(Commit, i).sha for i in ids] == [COMMIT_SHA]  # type: ignore[union-attr]
