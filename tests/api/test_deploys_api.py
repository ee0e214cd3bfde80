"""The Sentry releases subset, the native deploys API and GitHub webhooks, in process (both databases)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.sources.github import signature_for
from detector.store.db import transaction
from detector.store.models import Commit, CommitFile, Deploy, Project
from tests.deploys.gitrepos import History, build_history

ORG = "/api/0/organizations/default"


def recorded(fixtures_dir: Path) -> list[dict[str, Any]]:
    return json.loads((fixtures_dir / "real-clients" / "sentry-cli-releases.requests.json").read_text())


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# -- Sentry web API subset --------------------------------------------------------------------------


def test_the_recorded_sentry_cli_exchange_replays(
    client: TestClient, auth: dict[str, str], project: Project, fixtures_dir: Path
) -> None:
    """Every request sentry-cli made, replayed with org 'acme' → 'default', answered as it expects."""
    answers = []
    for req in recorded(fixtures_dir):
        path = req["path"].replace("/organizations/acme/", "/organizations/default/")
        r = client.request(req["method"], path, headers=auth, json=req["body"])
        assert r.status_code in (200, 201, 208), (req["method"], path, r.text)
        assert r.headers["content-type"].startswith("application/json")
        answers.append((req["method"], path, r.json()))

    assert answers[0][2] == []  # GET repos/?cursor= is a JSON list
    assert answers[1][2]["version"] == "web@1.2.0" and answers[1][2]["projects"][0]["slug"] == "web"
    assert answers[2][2] == {}  # no earlier release with commits
    put = answers[3][2]
    assert put["commitCount"] == 2
    assert put["lastCommit"]["id"] == "32214d2db04e671c836df6c8d07bbb94798e85eb"
    assert answers[4][2]["dateCreated"]  # second POST: the same release back
    deploy = answers[6][2]
    assert deploy["environment"] == "production"
    assert deploy["dateFinished"] == "2026-11-27T15:04:21.635383Z"
    assert set(deploy) >= {"id", "environment", "dateStarted", "dateFinished", "name", "url"}
    assert answers[7][2]["dateReleased"] == "2026-11-27T15:04:21.643185Z"

    listing = client.get("/api/v1/projects/web/deploys", headers=auth).json()["items"]
    assert [d["release"] for d in listing] == ["web@1.2.0"]
    commits = listing[0]["commits"]
    assert [c["sha"] for c in commits] == [
        "ccd37021ca256e597359bd3d43ed23c65ae5d118",  # oldest first
        "32214d2db04e671c836df6c8d07bbb94798e85eb",
    ]
    assert [(f["path"], f["change_type"]) for f in commits[1]["files"]] == [
        ("src/api/entitlements.ts", "M"),
        ("src/instrument.ts", "A"),
    ]
    sentry_deploys = client.get(f"{ORG}/releases/web@1.2.0/deploys/", headers=auth).json()
    assert [d["environment"] for d in sentry_deploys] == ["production"]
    sentry_commits = client.get(f"{ORG}/releases/web@1.2.0/commits/", headers=auth).json()
    assert sentry_commits[0]["id"] == "32214d2db04e671c836df6c8d07bbb94798e85eb"


def test_release_creation_is_201_then_208_and_versions_may_hold_slashes(
    client: TestClient, auth: dict[str, str], project: Project
) -> None:
    body = {"version": "web@feature/x-1", "projects": ["web"], "ref": "abc", "url": "https://ci/1"}
    first = client.post(f"{ORG}/releases/", headers=auth, json=body)
    again = client.post(f"{ORG}/releases/", headers=auth, json=body)
    assert (first.status_code, again.status_code) == (201, 208)
    assert first.json()["id"] == again.json()["id"]
    got = client.get(f"{ORG}/releases/web@feature%2Fx-1/", headers=auth).json()
    assert (got["version"], got["ref"], got["url"]) == ("web@feature/x-1", "abc", "https://ci/1")
    deploy = client.post(f"{ORG}/releases/web@feature/x-1/deploys/", headers=auth, json={"environment": "qa"})
    assert deploy.status_code == 201
    assert client.get(f"{ORG}/releases/web@feature/x-1/", headers=auth).json()["deployCount"] == 1


def test_previous_with_commits_names_the_last_release_with_commits(
    client: TestClient, auth: dict[str, str], project: Project
) -> None:
    commit = {"id": "a" * 40, "message": "m", "timestamp": "2026-11-27T15:00:00Z", "patch_set": []}
    client.post(f"{ORG}/releases/", headers=auth, json={"version": "web@1", "projects": ["web"]})
    client.put(f"{ORG}/releases/web@1/", headers=auth, json={"commits": [commit]})
    client.post(f"{ORG}/releases/", headers=auth, json={"version": "web@2", "projects": ["web"]})
    previous = client.get(f"{ORG}/releases/web@2/previous-with-commits/", headers=auth).json()
    assert previous["version"] == "web@1"
    assert previous["lastCommit"]["id"] == "a" * 40


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    [
        ("GET", "/api/0/organizations/acme/repos/?cursor=", None, 404, "organization 'acme' not found"),
        ("POST", f"{ORG}/releases/", {"version": "v", "projects": ["nope"]}, 404, "project 'nope' not found"),
        ("POST", f"{ORG}/releases/", {"version": "v"}, 400, "at least one project"),
        ("POST", f"{ORG}/releases/", {"projects": ["web"]}, 400, "version is required"),
        ("PUT", f"{ORG}/releases/web@0/", {"commits": []}, 404, "release 'web@0' not found"),
        ("GET", f"{ORG}/releases/web@0/", None, 404, "release 'web@0' not found"),
        ("POST", f"{ORG}/releases/web@0/deploys/", {"environment": "production"}, 404, "release 'web@0'"),
    ],
)
def test_sentry_api_errors_are_clear(
    client: TestClient,
    auth: dict[str, str],
    project: Project,
    method: str,
    path: str,
    body: Any,
    status: int,
    detail: str,
) -> None:
    r = client.request(method, path, headers=auth, json=body)
    assert r.status_code == status
    assert detail in r.json()["detail"]


def test_sentry_api_refuses_bad_json_bad_commits_and_missing_tokens(
    client: TestClient, auth: dict[str, str], project: Project
) -> None:
    client.post(f"{ORG}/releases/", headers=auth, json={"version": "web@1", "projects": ["web"]})
    bad = client.put(f"{ORG}/releases/web@1/", headers={**auth, "Content-Type": "application/json"}, content=b"{")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["detail"]
    bad_commit = client.put(f"{ORG}/releases/web@1/", headers=auth, json={"commits": [{"id": "zz"}]})
    assert bad_commit.status_code == 400 and "commits[0].id" in bad_commit.json()["detail"]
    no_env = client.post(f"{ORG}/releases/web@1/deploys/", headers=auth, json={"name": "x"})
    assert no_env.status_code == 400 and "environment" in no_env.json()["detail"]
    assert client.get(f"{ORG}/repos/").status_code == 401
    assert client.get(f"{ORG}/repos/", headers={"Authorization": "Bearer nope"}).status_code == 401


# -- native deploys API -----------------------------------------------------------------------------


@pytest.fixture
def history(tmp_path: Path) -> History:
    return build_history(tmp_path / "repo")


@pytest.fixture
def linked(factory: sessionmaker[Session], project: Project, history: History) -> Project:
    with transaction(factory) as session:
        row = session.get(Project, project.id)
        assert row is not None
        row.repo_path = str(history.path)
        return row


def test_json_deploys_read_git_between_deploys_and_are_idempotent(
    client: TestClient, auth: dict[str, str], linked: Project, history: History, factory: sessionmaker[Session]
) -> None:
    first = client.post(
        "/api/v1/projects/web/deploys",
        headers=auth,
        json={"release": "web@1", "environment": "production", "sha": history.v1, "finished": 1795600100},
    )
    assert first.status_code == 201, first.text
    body = {"release": "web@2", "environment": "production", "sha": history.v2, "finished": "2026-11-27T15:00Z"}
    second = client.post("/api/v1/projects/web/deploys", headers=auth, json=body)
    repeat = client.post("/api/v1/projects/web/deploys", headers=auth, json=body)
    assert (second.status_code, repeat.status_code) == (201, 200)
    assert second.json()["id"] == repeat.json()["id"]
    assert count(factory, Deploy) == 2
    shas = [c["sha"] for c in second.json()["commits"]]
    assert set(shas) == {history.feature, history.main_fix, history.merge, history.v2}

    page1 = client.get("/api/v1/projects/web/deploys", headers=auth, params={"limit": 1}).json()
    assert [d["release"] for d in page1["items"]] == ["web@2"]  # newest first
    page2 = client.get("/api/v1/projects/web/deploys", headers=auth, params={"limit": 1, "cursor": page1["next"]})
    assert [d["release"] for d in page2.json()["items"]] == ["web@1"] and page2.json()["next"] is None

    detail = client.get(f"/api/v1/projects/web/deploys/{second.json()['id']}", headers=auth).json()
    assert all("patch" not in f for c in detail["commits"] for f in c["files"])
    with_patch = client.get(
        f"/api/v1/projects/web/deploys/{second.json()['id']}", headers=auth, params={"include": "patch"}
    ).json()
    fix = next(c for c in with_patch["commits"] if c["sha"] == history.main_fix)
    assert "+  return { items: [] };" in fix["files"][0]["patch"]
    assert set(detail) >= {"id", "release", "environment", "date_started", "date_finished", "deployed_at", "sha"}
    assert detail["deployed_at"] == "2026-11-27T15:00:00Z"  # ISO 8601 UTC, as every time the API writes


def test_json_deploys_take_explicit_commits_in_the_read_shape(
    client: TestClient, auth: dict[str, str], project: Project
) -> None:
    commit = {
        "sha": "b" * 40,
        "message": "Rename helper",
        "author": {"name": "Dana", "email": "dana@example.com"},
        "timestamp": "2026-11-27T14:00:00Z",
        "files": [{"path": "new.js", "change_type": "R", "old_path": "old.js", "additions": 0, "deletions": 0}],
    }
    r = client.post(
        "/api/v1/projects/web/deploys",
        headers=auth,
        json={"release": "web@5", "environment": "staging", "sha": "b" * 40, "commits": [commit], "name": "ci#5"},
    )
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["source"] == "api" and got["name"] == "ci#5"
    assert got["commits"][0]["files"] == [
        {"path": "new.js", "change_type": "R", "old_path": "old.js", "additions": 0, "deletions": 0}
    ]
    assert got["commits"][0]["author"] == {"name": "Dana", "email": "dana@example.com"}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"environment": "production"}', "release is required"),
        (b'{"release": "web@1"}', "environment is required"),
        (b'{"release": "web@1", "environment": "p", "finished": "soon"}', "finished"),
        (b'{"release": "web@1", "environment": "p", "sha": "xyz"}', "sha"),
        (b'{"release": "web@1", "environment": "p", "from_sha": "abcd1234"}', "needs a linked repository"),
        (b'{"release": "web@1", "environment": "p", "commits": [{"sha": "abcd1234", "files": 3}]}', "files"),
    ],
)
def test_json_deploy_bad_input_is_400_and_stores_nothing(
    client: TestClient, auth: dict[str, str], project: Project, factory: sessionmaker[Session], body: bytes, detail: str
) -> None:
    r = client.post("/api/v1/projects/web/deploys", headers={**auth, "Content-Type": "application/json"}, content=body)
    assert r.status_code == 400, r.text
    assert detail in r.json()["detail"]
    assert count(factory, Deploy) == 0


def test_json_deploy_errors_for_unknown_project_and_sha(
    client: TestClient, auth: dict[str, str], linked: Project, factory: sessionmaker[Session]
) -> None:
    body = {"release": "web@1", "environment": "production", "sha": "deadbeef" * 5}
    assert client.post("/api/v1/projects/nope/deploys", headers=auth, json=body).status_code == 404
    unknown = client.post("/api/v1/projects/web/deploys", headers=auth, json=body)
    assert unknown.status_code == 400 and "unknown sha" in unknown.json()["detail"]
    assert client.get("/api/v1/projects/web/deploys/999", headers=auth).status_code == 404
    assert client.get("/api/v1/projects/web/deploys", headers=auth, params={"cursor": "@@"}).status_code == 400
    assert count(factory, Deploy) == 0


# -- GitHub webhooks --------------------------------------------------------------------------------


def github_payloads(fixtures_dir: Path, event: str) -> list[dict[str, Any]]:
    return json.loads((fixtures_dir / "github-webhooks" / f"{event}.json").read_text())


def send(client: TestClient, project: Project, event: str, payload: Any, *, secret: str | None = None) -> Any:
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": signature_for(secret or project.github_secret or "", body),
        "Content-Type": "application/json",
    }
    return client.post("/api/v1/webhooks/github", params={"project": project.slug}, headers=headers, content=body)


@pytest.mark.parametrize("event", ["deployment", "deployment_status", "push", "release"])
def test_every_github_fixture_payload_is_answered(
    client: TestClient,
    auth: dict[str, str],
    project: Project,
    fixtures_dir: Path,
    factory: sessionmaker[Session],
    event: str,
) -> None:
    statuses = []
    for payload in github_payloads(fixtures_dir, event):
        r = send(client, project, event, payload)
        statuses.append(r.status_code)
        if event == "deployment_status" and payload["deployment_status"]["state"] == "success":
            assert r.status_code == 201, r.text
            assert r.json()["release"] == payload["deployment"]["sha"]  # payload {} → the sha
            assert r.json()["environment"] == "production"
        elif event == "deployment_status":
            assert r.status_code == 202 and "in_progress" in r.json()["ignored"]
        elif event == "push":
            assert r.status_code == 200
            assert r.json()["commits"] == (
                len(payload["commits"]) if payload["ref"].startswith("refs/heads/") and payload["after"] != "0" * 40
                else 0
            )  # fmt: skip
        else:
            assert r.status_code == 202, r.text
    if event == "deployment_status":
        # Three success statuses of one GitHub deployment are one deploy.
        assert count(factory, Deploy) == 1
        deploy = client.get("/api/v1/projects/web/deploys", headers=auth).json()["items"][0]
        assert deploy["source"] == "github"
        assert deploy["sha"] == "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
        assert deploy["deployed_at"] == "2019-05-15T15:20:55Z"
    if event == "push":
        with factory() as session:
            commit = session.scalar(select(Commit))
            assert commit is not None and commit.sha == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
            pushed = next(p for p in github_payloads(fixtures_dir, "push") if p["commits"])["commits"][0]
            assert commit.message == pushed["message"].strip("\n")
            assert commit.author_email == pushed["author"]["email"]
    if event in ("deployment", "release"):
        assert set(statuses) == {202}
        assert count(factory, Deploy) == 0


def test_a_pushed_commit_becomes_the_deploys_commit(
    client: TestClient, auth: dict[str, str], project: Project, fixtures_dir: Path
) -> None:
    push = next(p for p in github_payloads(fixtures_dir, "push") if p["commits"])
    assert send(client, project, "push", push).status_code == 200
    status = github_payloads(fixtures_dir, "deployment_status")[0]
    status = {**status, "deployment": {**status["deployment"], "sha": push["after"], "payload": {"release": "web@7"}}}
    r = send(client, project, "deployment_status", status)
    assert r.status_code == 201 and r.json()["release"] == "web@7"
    detail = client.get(f"/api/v1/projects/web/deploys/{r.json()['deploy_id']}", headers=auth).json()
    assert [c["sha"] for c in detail["commits"]] == [push["after"]]
    assert detail["commits"][0]["files"] == [
        {"path": path, "change_type": "A", "old_path": None, "additions": None, "deletions": None}
        for path in push["commits"][0]["added"]
    ]


def test_pushed_commits_are_enriched_from_the_linked_repository(
    client: TestClient, linked: Project, history: History, fixtures_dir: Path, factory: sessionmaker[Session]
) -> None:
    push = next(p for p in github_payloads(fixtures_dir, "push") if p["commits"])
    commit = {**push["commits"][0], "id": history.main_fix, "added": [], "modified": ["src/api/entitlements.js"]}
    r = send(client, linked, "push", {**push, "after": history.main_fix, "commits": [commit]})
    assert r.status_code == 200 and r.json() == {"commits": 1}
    with factory() as session:
        stored = session.scalar(select(Commit).where(Commit.sha == history.main_fix))
        assert stored is not None and stored.enriched
        files = store_files(session, stored.id)
    assert files == [("src/api/entitlements.js", "M", 1, 1)]


def store_files(session: Session, commit_id: int) -> list[tuple[str, str, int | None, int | None]]:
    rows = session.scalars(select(CommitFile).where(CommitFile.commit_id == commit_id))
    return [(f.path, f.change_type, f.additions, f.deletions) for f in rows]


def test_webhook_signatures_are_required_and_checked(
    client: TestClient, project: Project, fixtures_dir: Path, factory: sessionmaker[Session]
) -> None:
    payload = github_payloads(fixtures_dir, "deployment_status")[0]
    wrong = send(client, project, "deployment_status", payload, secret="not-the-secret")
    assert wrong.status_code == 401 and "does not match" in wrong.json()["detail"]
    body = json.dumps(payload).encode()
    missing = client.post(
        "/api/v1/webhooks/github",
        headers={"X-GitHub-Event": "deployment_status", "X-Detector-Project": "web"},
        content=body,
    )
    assert missing.status_code == 401 and "missing X-Hub-Signature-256" in missing.json()["detail"]
    assert count(factory, Deploy) == 0

    ping = client.post(
        "/api/v1/webhooks/github",
        headers={
            "X-GitHub-Event": "ping",
            "X-Detector-Project": "web",
            "X-Hub-Signature-256": signature_for(project.github_secret or "", b'{"zen": "hi"}'),
        },
        content=b'{"zen": "hi"}',
    )
    assert ping.status_code == 200 and ping.json()["ok"] is True
    unnamed = client.post("/api/v1/webhooks/github", headers={"X-GitHub-Event": "ping"}, content=b"{}")
    assert unnamed.status_code == 400
    unknown = client.post("/api/v1/webhooks/github?project=nope", headers={"X-GitHub-Event": "ping"}, content=b"{}")
    assert unknown.status_code == 404
