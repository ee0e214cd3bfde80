"""Token scopes (issue 18, item 8): each route checks the scope it needs; tokens from before scopes had
every scope, and still do after the upgrade."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.config import Settings
from detector.store.db import alembic_config, make_engine, transaction, upgrade
from detector.store.models import Deploy, Project, Release
from detector.store.projects import create_token, hash_token
from detector.store.scopes import TokenScope

ORG = "/api/0/organizations/default"
INGEST, READ, DEPLOY, ADMIN = TokenScope.INGEST, TokenScope.READ, TokenScope.DEPLOY, TokenScope.ADMIN

# (method, path, JSON body, the scopes that may use it besides admin)
ROUTES: list[tuple[str, str, object, set[TokenScope]]] = [
    ("GET", "/api/v1/projects", None, {READ}),
    ("GET", "/api/v1/projects/web/signatures", None, {READ}),
    ("GET", "/api/v1/projects/web/anomalies", None, {READ}),
    ("GET", "/api/v1/projects/web/deploys", None, {READ, DEPLOY}),
    ("GET", "/api/v1/projects/web/releases/web@1/verdict", None, {READ, DEPLOY}),
    ("GET", "/api/v1/projects/web/releases/web@1/gate", None, {READ, DEPLOY}),
    ("POST", "/api/v1/projects/web/deploys", {"release": "web@1", "environment": "production"}, {DEPLOY}),
    ("POST", "/api/v1/projects/web/anomalies/1/resolve", None, set()),
    ("POST", "/api/v1/projects/web/detect", None, set()),
    ("GET", f"{ORG}/releases/", None, {READ, DEPLOY}),
    ("POST", f"{ORG}/releases/", {"version": "web@2", "projects": ["web"]}, {DEPLOY}),
    ("GET", f"{ORG}/chunk-upload/", None, {INGEST}),
]


def token_with(factory: sessionmaker[Session], *scopes: TokenScope) -> dict[str, str]:
    with transaction(factory) as session:
        return {"Authorization": f"Bearer {create_token(session, label='scoped', scopes=scopes)}"}


def rows(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("scope", list(TokenScope))
def test_each_route_answers_403_to_a_token_without_its_scope_and_writes_nothing(
    client: TestClient, factory: sessionmaker[Session], project: Project, scope: TokenScope
) -> None:
    headers = token_with(factory, scope)
    for method, path, body, accepted in ROUTES:
        before = (rows(factory, Deploy), rows(factory, Release))
        answer = client.request(method, path, headers=headers, json=body)
        if scope == ADMIN or scope in accepted:
            assert answer.status_code not in (401, 403), (method, path, scope, answer.text)
            continue
        assert answer.status_code == 403, (method, path, scope, answer.text)
        message = answer.json()["detail"]
        assert f"'{sorted(accepted)[0] if accepted else ADMIN}'" in message and f"has: {scope}" in message
        assert (rows(factory, Deploy), rows(factory, Release)) == before, (method, path)


def test_a_token_made_before_scopes_keeps_every_scope_after_the_upgrade(
    database_url: str, settings: Settings, project: Project, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        cfg = alembic_config(database_url)
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0007")
    old_token = "dtk_" + uuid.uuid4().hex
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO api_tokens (token_hash, label, created_at) VALUES (:h, 'ci', :at)"),
            {"h": hash_token(old_token), "at": datetime.now(UTC).replace(tzinfo=None)},
        )
    engine.dispose()
    upgrade(database_url)

    listed = run_detector(database_url, tmp_path, "token", "list", "--json")
    assert [t["scopes"] for t in json.loads(listed.stdout)] == [["ingest", "read", "deploy", "admin"]]
    headers = {"Authorization": f"Bearer {old_token}"}
    with TestClient(create_app(settings)) as client:
        for method, path, body, _accepted in ROUTES:
            answer = client.request(method, path, headers=headers, json=body)
            assert answer.status_code not in (401, 403), (method, path, answer.text)


def run_detector(database_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_") or k.startswith("DETECTOR_TEST")}
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", *args],
        env={**env, "DETECTOR_DATABASE_URL": database_url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_makes_a_token_with_only_the_scopes_named(
    database_url: str, client: TestClient, project: Project, tmp_path: Path
) -> None:
    made = run_detector(database_url, tmp_path, "token", "create", "--scope", "read", "--label", "grafana", "--json")
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)
    assert answer["scopes"] == ["read"]
    headers = {"Authorization": f"Bearer {answer['token']}"}
    assert client.get("/api/v1/projects", headers=headers).status_code == 200
    refused = client.post("/api/v1/projects/web/deploys", headers=headers, json={"release": "web@1"})
    assert refused.status_code == 403 and "'deploy'" in refused.json()["detail"]

    listed = json.loads(run_detector(database_url, tmp_path, "token", "list", "--json").stdout)
    assert [(t["label"], t["scopes"]) for t in listed] == [("grafana", ["read"])]
    assert "token" not in listed[0]  # shown once, when made

    bad = run_detector(database_url, tmp_path, "token", "create", "--scope", "write")
    assert bad.returncode == 1
    assert "unknown token scope 'write'" in bad.stderr and "ingest, read, deploy, admin" in bad.stderr
