"""The real sentry-cli against `detector serve` on loopback, in a real git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from detector.store.db import transaction
from detector.store.models import Project
from tests.conftest import LiveServer
from tests.deploys.gitrepos import History, build_history

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sentry-cli") is None, reason="sentry-cli is not installed"),
]

FINISHED = 1_795_700_000


def sentry_cli(server: LiveServer, token: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SENTRY_URL": server.url + "/",
        "SENTRY_AUTH_TOKEN": token,
        "SENTRY_ORG": "default",
        "SENTRY_PROJECT": "web",
        "SENTRY_LOG_LEVEL": "warn",
        "SENTRY_DISABLE_UPDATE_CHECK": "1",
    }
    return subprocess.run(
        ["sentry-cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def report_release(server: LiveServer, token: str, repo: Path) -> None:
    for args in (
        ("releases", "new", "web@2.0.0"),
        ("releases", "set-commits", "web@2.0.0", "--local"),
        ("releases", "deploys", "web@2.0.0", "new", "-e", "production", "--finished", str(FINISHED)),
        ("releases", "finalize", "web@2.0.0"),
    ):
        result = sentry_cli(server, token, repo, *args)
        assert result.returncode == 0, f"sentry-cli {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def only_deploy(server: LiveServer, auth: dict[str, str], include: str | None = None) -> dict:
    listing = httpx.get(f"{server.url}/api/v1/projects/web/deploys", headers=auth).json()
    assert len(listing["items"]) == 1 and listing["next"] is None
    params = {"include": include} if include else {}
    return httpx.get(
        f"{server.url}/api/v1/projects/web/deploys/{listing['items'][0]['id']}", headers=auth, params=params
    ).json()


@pytest.fixture
def history(tmp_path: Path) -> History:
    return build_history(tmp_path / "repo")


def test_sentry_cli_release_commits_and_deploy_reach_the_api(
    live_server: LiveServer, token: str, auth: dict[str, str], history: History
) -> None:
    report_release(live_server, token, history.path)

    release = httpx.get(f"{live_server.url}/api/0/organizations/default/releases/web@2.0.0/", headers=auth).json()
    assert release["version"] == "web@2.0.0"
    assert release["dateReleased"] is not None  # finalized
    assert release["commitCount"] == 6
    assert release["lastCommit"]["id"] == history.v2
    assert release["deployCount"] == 1

    deploy = only_deploy(live_server, auth)
    assert deploy["release"] == "web@2.0.0"
    assert deploy["environment"] == "production"
    assert deploy["source"] == "sentry-cli"
    assert datetime.fromisoformat(deploy["deployed_at"]) == datetime.fromtimestamp(FINISHED, tz=UTC)
    by_sha = {c["sha"]: c for c in deploy["commits"]}
    assert set(by_sha) == {history.base, history.v1, history.feature, history.main_fix, history.merge, history.v2}
    fix = by_sha[history.main_fix]
    assert fix["message"] == "Return entitlements as an object"
    assert fix["author"] == {"name": "Dana", "email": "dana@example.com"}
    # sentry-cli diffs each commit against the one before it in its date-ordered walk, not against its
    # parent, so around a merge it lists more paths than the commit changed; we keep what it sent.
    assert ("src/api/entitlements.js", "M") in [(f["path"], f["change_type"]) for f in fix["files"]]
    # Not linked to the repository: sentry-cli's paths only, no line counts.
    assert all(f["additions"] is None for f in fix["files"]) and fix["enriched"] is False


def test_a_linked_repository_adds_diffs_to_what_sentry_cli_sent(
    database_url: str,
    tmp_path: Path,
    factory: sessionmaker[Session],
    project: Project,
    token: str,
    auth: dict[str, str],
    history: History,
) -> None:
    with transaction(factory) as session:
        row = session.get(Project, project.id)
        assert row is not None
        row.repo_path = str(history.path)
    server = LiveServer(database_url, tmp_path).start()
    try:
        report_release(server, token, history.path)
        deploy = only_deploy(server, auth, include="patch")
    finally:
        server.stop()
    fix = next(c for c in deploy["commits"] if c["sha"] == history.main_fix)
    assert fix["enriched"] is True
    assert [f["path"] for f in fix["files"]] == ["src/api/entitlements.js"]  # the repository's own diff
    assert fix["files"][0]["additions"] == 1 and fix["files"][0]["deletions"] == 1
    assert "+  return { items: [] };" in fix["files"][0]["patch"]
    rename = next(c for c in deploy["commits"] if c["sha"] == history.feature)
    assert rename["files"][0]["change_type"] == "R"
    assert rename["files"][0]["old_path"] == "src/util/format.js"


def test_sentry_cli_deploy_for_an_unknown_release_fails_clearly(
    live_server: LiveServer, token: str, auth: dict[str, str], history: History
) -> None:
    result = sentry_cli(live_server, token, history.path, "releases", "deploys", "web@9.9.9", "new", "-e", "production")
    assert result.returncode != 0
    assert "not found" in (result.stdout + result.stderr).lower()
    direct = httpx.post(
        f"{live_server.url}/api/0/organizations/default/releases/web@9.9.9/deploys/",
        headers=auth,
        json={"environment": "production"},
    )
    assert direct.status_code == 404
    assert direct.json()["detail"] == "release 'web@9.9.9' not found in organization 'default'"
    assert httpx.get(f"{live_server.url}/api/v1/projects/web/deploys", headers=auth).json()["items"] == []
