"""The `detector` command as a user runs it: JSON outputs, and clear messages instead of tracebacks."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.config import Settings
from detector.store.db import safe_url, transaction
from detector.store.models import Project
from detector.store.projects import create_project
from detector.times import iso_utc
from tests.conftest import BACKEND, POSTGRES_URL, LiveServer, wait_for
from tests.test_notify import seed_incident


def run_cli(*args: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_") or k.startswith("DETECTOR_TEST")}
    env["DETECTOR_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_project_and_token_json(database_url: str, tmp_path: Path) -> None:
    created = run_cli(
        "project", "create", "web", "--platform", "javascript", "--json", database_url=database_url, cwd=tmp_path
    )
    assert created.returncode == 0, created.stderr
    project = json.loads(created.stdout.strip().splitlines()[-1])
    assert {"id", "slug", "org", "public_key", "dsn"} <= project.keys()
    assert project["dsn"].endswith(f"/{project['id']}") and project["public_key"] in project["dsn"]
    again = run_cli("project", "create", "web", "--json", database_url=database_url, cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = run_cli("project", "list", "--json", database_url=database_url, cwd=tmp_path)
    assert [p["slug"] for p in json.loads(listed.stdout)] == ["web"]
    token = run_cli("token", "create", "--json", database_url=database_url, cwd=tmp_path)
    assert json.loads(token.stdout)["token"].startswith("dtk_")


def test_bad_database_url_is_a_clear_message(tmp_path: Path) -> None:
    bad_scheme = run_cli("project", "list", database_url="mysql://nowhere/db", cwd=tmp_path)
    assert bad_scheme.returncode == 1
    assert "DETECTOR_DATABASE_URL" in bad_scheme.stderr and "Traceback" not in bad_scheme.stderr
    unreachable = run_cli("db", "upgrade", database_url="postgresql+psycopg://nobody@127.0.0.1:9/none", cwd=tmp_path)
    assert unreachable.returncode == 1
    assert "cannot reach the database" in unreachable.stderr and "Traceback" not in unreachable.stderr


def test_port_in_use_is_a_clear_message(database_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), database_url=database_url, cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_default_database_is_a_sqlite_file_created_on_first_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    result = subprocess.run(
        [sys.executable, "-m", "detector.cli", "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "detector.db").exists()


@pytest.mark.parametrize("public_url", [None, "https://detector.example.com"])
def test_serve_derives_the_public_url_from_its_port_and_says_where_it_listens(
    database_url: str, tmp_path: Path, project: Project, auth: dict[str, str], public_url: str | None
) -> None:
    server = LiveServer(database_url, tmp_path)
    server.env.pop("DETECTOR_PUBLIC_URL")
    if public_url is not None:
        server.env["DETECTOR_PUBLIC_URL"] = public_url
    server.start()
    try:
        listed = httpx.get(server.url + "/api/v1/projects", headers=auth, timeout=10).json()["items"]
        expected = public_url or server.url  # without the setting: the --host/--port it was started with
        host = expected.split("://", 1)[1]
        assert [p["dsn"] for p in listed] == [f"{expected.split('://')[0]}://{project.public_key}@{host}/{project.id}"]
        assert wait_for(lambda: "listening on" in server.log(), timeout=5)
    finally:
        server.stop()
    line = next(line for line in server.log().splitlines() if "listening on" in line)
    assert f"listening on {server.url} " in line
    assert f"SDKs and sentry-cli use {expected}" in line
    assert "a worker in a child process" in line and f"database {safe_url(database_url)};" in line


def run_cli_default_database(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_") or k.startswith("DETECTOR_TEST")}
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", *args],
        env={**env, **extra},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("deploy", "--project", "web", "--release", "web@1", "-e", "production", "--sha", "HEAD", "--repo", "."),
        ("project", "list"),
        ("project", "create", "web"),
        ("token", "create"),
        ("detect", "--project", "web"),
        ("project", "github-secret", "web"),
    ],
)
def test_commands_other_than_serve_refuse_a_missing_database(args: tuple[str, ...], tmp_path: Path) -> None:
    """Run from an app's repository (no ./detector.db there): the command names the file and the setting,
    and leaves nothing behind."""
    result = run_cli_default_database(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert f"no database at {tmp_path.resolve() / 'detector.db'}" in result.stderr.replace("\n", "")
    assert "DETECTOR_DATABASE_URL is unset" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []

    typo = tmp_path / "no" / "such" / "dir" / "detector.db"
    mistyped = run_cli_default_database(*args, cwd=tmp_path, DETECTOR_DATABASE_URL=f"sqlite:///{typo}")
    assert mistyped.returncode == 1
    assert f"DETECTOR_DATABASE_URL=sqlite:///{typo}" in mistyped.stderr.replace("\n", "")
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_creates_a_file_but_not_a_mistyped_directory(tmp_path: Path) -> None:
    typo = tmp_path / "srv" / "detector.db"
    refused = run_cli_default_database("db", "upgrade", cwd=tmp_path, DETECTOR_DATABASE_URL=f"sqlite:///{typo}")
    assert refused.returncode == 1
    assert f"directory {typo.parent} does not exist" in refused.stderr.replace("\n", "")
    assert not typo.parent.exists()
    (tmp_path / "srv").mkdir()
    created = run_cli_default_database("db", "upgrade", cwd=tmp_path, DETECTOR_DATABASE_URL=f"sqlite:///{typo}")
    assert created.returncode == 0, created.stderr
    listed = run_cli_default_database(
        "project", "list", "--json", cwd=tmp_path, DETECTOR_DATABASE_URL=f"sqlite:///{typo}"
    )
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_a_database_without_the_schema_is_refused_too(tmp_path: Path) -> None:
    """An existing database that is not the detector's (another application's SQLite file, a PostgreSQL
    database created by an operator and never upgraded) is refused, not given tables."""
    if BACKEND == "sqlite":
        other = tmp_path / "other-app.db"
        with closing(sqlite3.connect(other)) as conn:
            conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
            conn.commit()
        result = run_cli_default_database("project", "list", cwd=tmp_path, DETECTOR_DATABASE_URL=f"sqlite:///{other}")
        assert result.returncode == 1
        assert f"the database {other} has no detector schema yet" in result.stderr.replace("\n", "")
        with closing(sqlite3.connect(other)) as conn:
            tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert tables == ["notes"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["other-app.db"]  # no queue file beside it
        return
    name = f"detector_empty_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
        result = run_cli_default_database("project", "list", cwd=tmp_path, DETECTOR_DATABASE_URL=url)
        assert result.returncode == 1
        assert "has no detector schema yet" in result.stderr and "detector db upgrade" in result.stderr
        engine = create_engine(url)
        try:
            assert not inspect(engine).has_table("projects")  # refused, not created
        finally:
            engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _times(value: object, path: str = "") -> list[tuple[str, str]]:
    """Every (path, text) in a JSON document that looks like a time."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _times(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in _times(v, f"{path}[{i}]")]
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\d[T ]\d\d:", value):
        return [(path, value)]
    return []


def _shape(value: object) -> object:
    """The keys of a JSON document, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def test_detect_answers_the_same_shape_and_times_from_the_cli_and_the_api(
    database_url: str, settings: Settings, factory: sessionmaker[Session], project: Project, auth: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    with transaction(factory) as session:
        twin = create_project(session, slug="twin", org=settings.org)
    deployed = seed_incident(factory, project)
    seed_incident(factory, twin)
    at = deployed + timedelta(minutes=4)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/api/v1/projects/web/detect", params={"at": iso_utc(at)}, headers=auth)
    assert answer.status_code == 200, answer.text
    over_http = answer.json()
    unix = str(int(at.timestamp()))  # unix seconds are accepted wherever an ISO 8601 time is
    cli = run_cli("detect", "--project", "twin", "--at", unix, "--json", database_url=database_url, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    from_cli = json.loads(cli.stdout)

    assert over_http["changes"] and from_cli["changes"]
    assert _shape(from_cli) == _shape(over_http)
    assert over_http["changes"][0]["anomaly"]["kind"] == from_cli["changes"][0]["anomaly"]["kind"] == "new_signature"
    assert from_cli["at"] == over_http["at"] == iso_utc(at)
    times = _times(over_http) + _times(from_cli)
    assert len(times) >= 6 and all(ISO_Z.match(text) for _path, text in times), times

    text = run_cli("detect", "--project", "twin", "--at", unix, database_url=database_url, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    for line in text.stdout.splitlines():
        assert line.count("web@1.2.0") <= 1, line  # the release is named once


def test_deploy_times_take_iso_8601_or_unix_seconds_and_help_matches_the_flags(
    database_url: str, project: Project, tmp_path: Path
) -> None:
    repo = tmp_path / "app"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q",
                 "--allow-empty", "-m", "first"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    base = ("deploy", "--project", "web", "-e", "production", "--sha", "HEAD", "--repo", str(repo), "--json")
    iso = run_cli(
        *base, "--release", "web@1", "--finished", "2026-11-27T15:04:00Z", database_url=database_url, cwd=tmp_path
    )
    unix = run_cli(*base, "--release", "web@2", "--finished", "1795792000", database_url=database_url, cwd=tmp_path)
    assert iso.returncode == 0 and unix.returncode == 0, iso.stderr + unix.stderr
    assert json.loads(iso.stdout)["deployed_at"] == "2026-11-27T15:04:00Z"
    assert json.loads(unix.stdout)["deployed_at"] == "2026-11-27T15:06:40Z"  # 1795792000
    bad = run_cli(*base, "--release", "web@3", "--finished", "yesterday", database_url=database_url, cwd=tmp_path)
    assert bad.returncode == 1 and "ISO 8601" in bad.stderr and "unix seconds" in bad.stderr

    for command in (["deploy"], ["detect"], ["project", "create"], ["project", "list"], ["token", "create"], ["serve"]):
        shown = run_cli(*command, "--help", database_url=database_url, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "<bool>" not in shown.stdout and "{slug}" not in shown.stdout, shown.stdout
    assert "SLUG" in run_cli("project", "create", "--help", database_url=database_url, cwd=tmp_path).stdout
    refused = run_cli("project", "list", "--json", "true", database_url=database_url, cwd=tmp_path)
    assert refused.returncode != 0  # a flag takes no value, as its help now shows


def test_ci_records_deploys_and_runs_passes_over_http_without_database_access(
    live_server: LiveServer, project: Project, token: str, tmp_path: Path
) -> None:
    repo = tmp_path / "app"
    repo.mkdir()
    git = ["git", "-c", "user.name=Dana", "-c", "user.email=dana@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    shas = []
    for n, name in enumerate(["src/a.js", "src/b.js", "src/c.js"]):
        (repo / "src").mkdir(exist_ok=True)
        (repo / name).write_text(f"export const v = {n};\n")
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", f"change {name}"], cwd=repo, check=True)
        shas.append(
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
            ).stdout.strip()
        )
    ci = tmp_path / "ci"  # the CI job's directory: no database here, and none must appear
    ci.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_") or k.startswith("DETECTOR_TEST")}

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "detector.cli", *args], env={**env, **extra}, cwd=ci, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip

    first = cli(
        "deploy", "--project", "web", "--release", "web@1", "-e", "production", "--sha", shas[1], "--repo", str(repo),
        "--json", "--url", live_server.url, "--token", token,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    recorded = json.loads(first.stdout)
    assert recorded["created"] and recorded["sha"] == shas[1] and recorded["commit_count"] == 2
    # the variables instead of the options; the range starts at the previous deploy
    second = cli(
        "deploy", "--project", "web", "--release", "web@2", "-e", "production", "--sha", "HEAD", "--repo", str(repo),
        "--finished", "2026-11-27T15:04:00Z", "--json", DETECTOR_URL=live_server.url, DETECTOR_TOKEN=token,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    detail = json.loads(second.stdout)
    assert [c["sha"] for c in detail["commits"]] == [shas[2]] and detail["deployed_at"] == "2026-11-27T15:04:00Z"
    assert [f["path"] for f in detail["commits"][0]["files"]] == ["src/c.js"]

    passed = cli("detect", "--project", "web", "--json", DETECTOR_URL=live_server.url, DETECTOR_TOKEN=token)
    assert passed.returncode == 0, passed.stderr
    assert set(json.loads(passed.stdout)) == {"at", "changes"}

    refused = cli("detect", "--project", "web", "--url", live_server.url, "--token", "dtk_wrong")
    assert refused.returncode == 1 and "401" in refused.stderr and "unknown API token" in refused.stderr
    assert list(ci.iterdir()) == []
