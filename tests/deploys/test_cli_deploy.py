"""`detector deploy` and `detector project github-secret` through the real Typer app."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from detector.cli import app
from detector.config import Settings
from detector.store.models import Deploy, Project
from tests.deploys.gitrepos import History


@pytest.fixture
def run(settings: Settings, monkeypatch: pytest.MonkeyPatch, project: Project):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DETECTOR_DATABASE_URL", settings.database_url)
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    return invoke


def deploy_json(run, *args: str) -> dict:  # type: ignore[no-untyped-def]
    code, out = run("deploy", "--project", "web", "--environment", "production", "--json", *args)
    assert code == 0, out
    return json.loads(out.strip().splitlines()[-1])


def test_deploys_read_commits_files_merges_and_renames_from_the_repository(
    run, history: History, factory: sessionmaker[Session]
) -> None:  # type: ignore[no-untyped-def]
    repo = str(history.path)
    first = deploy_json(run, "--release", "web@1", "--sha", history.v1, "--repo", repo, "--finished", "1795600100")
    assert [c["sha"] for c in first["commits"]] == [history.base, history.v1]
    assert first["deployed_at"] == datetime.fromtimestamp(1795600100, tz=UTC).isoformat().replace("+00:00", "Z")

    second = deploy_json(run, "--release", "web@2", "--sha", "main", "--repo", repo, "--finished", "1795600400")
    assert second["created"] is True and second["sha"] == history.v2
    by_sha = {c["sha"]: c for c in second["commits"]}
    assert set(by_sha) == {history.feature, history.main_fix, history.merge, history.v2}
    assert by_sha[history.feature]["files"][0] == {
        "path": "src/util/formatting.js",
        "change_type": "R",
        "old_path": "src/util/format.js",
        "additions": 0,
        "deletions": 0,
    }
    assert by_sha[history.merge]["message"] == "Merge branch 'feature'"
    assert [(f["path"], f["change_type"]) for f in by_sha[history.v2]["files"]] == [("src/instrument.js", "A")]
    fix = by_sha[history.main_fix]["files"][0]
    assert (fix["path"], fix["additions"], fix["deletions"]) == ("src/api/entitlements.js", 1, 1)

    again = deploy_json(run, "--release", "web@2", "--sha", history.v2, "--repo", repo, "--finished", "1795600400")
    assert again["created"] is False and again["id"] == second["id"]
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Deploy)) == 2


def test_from_overrides_the_previous_deploy_and_the_linked_repository_is_the_default(
    run, history: History, factory: sessionmaker[Session], project: Project
) -> None:  # type: ignore[no-untyped-def]
    code, out = run("project", "set-repo", "web", str(history.path))
    assert code == 0, out
    got = deploy_json(run, "--release", "web@2", "--sha", history.v2, "--from", history.merge)
    assert [c["sha"] for c in got["commits"]] == [history.v2]
    code, out = run("deploy", "--project", "web", "--release", "web@2", "-e", "staging", "--sha", history.v2)
    assert code == 0 and "recorded deploy" in out and "Add instrumentation" in out


def test_clear_errors_and_nothing_recorded(
    run, history: History, tmp_path: Path, factory: sessionmaker[Session]
) -> None:  # type: ignore[no-untyped-def]
    repo, missing = str(history.path), str(tmp_path / "missing")
    cases = [
        (["--project", "nope", "--sha", "HEAD"], "no project with slug 'nope'"),
        (["--project", "web", "--sha", "HEAD"], "has no linked repository"),
        (["--project", "web", "--sha", "deadbeef", "--repo", repo], "unknown revision 'deadbeef'"),
        (["--project", "web", "--sha", "HEAD", "--repo", missing], "no git repository"),
        (["--project", "web", "--sha", "HEAD", "--repo", repo, "--from", "nope"], "unknown revision 'nope'"),
    ]
    for args, message in cases:
        code, out = run("deploy", "--release", "web@1", "--environment", "production", *args)
        assert code == 1, args
        assert message in " ".join(out.split()), out
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Deploy)) == 0


def test_github_secret_prints_the_projects_secret(run, project: Project) -> None:  # type: ignore[no-untyped-def]
    code, out = run("project", "github-secret", "web")
    assert code == 0 and out.strip() == project.github_secret
    code, out = run("project", "github-secret", "nope")
    assert code == 1 and "no project" in out
