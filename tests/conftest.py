"""Shared fixtures: a fresh database of the kind chosen by DETECTOR_TEST_DATABASE, apps and live servers.

`DETECTOR_TEST_DATABASE=sqlite` (default) or `postgresql`; `DETECTOR_TEST_POSTGRES_URL` names the server
(default postgresql+psycopg://postgres@127.0.0.1:5432/test). CI runs the suite once for each.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.store.db import make_engine, make_sessionmaker, transaction, upgrade
from detector.store.models import Project
from detector.store.projects import create_project, create_token

ROOT = Path(__file__).resolve().parents[1]
# the repository's own copy (tests/fixtures/), so a fresh clone runs every test; the variable points elsewhere
FIXTURES = Path(os.environ.get("DETECTOR_FIXTURES") or Path(__file__).resolve().parent / "fixtures")
BACKEND = os.environ.get("DETECTOR_TEST_DATABASE", "sqlite")
POSTGRES_URL = os.environ.get("DETECTOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# every engine that connected, so the databases a test made can be closed before they are dropped
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


@event.listens_for(Engine, "engine_connect")
def _remember_engine(connection: Any) -> None:
    _ENGINES.add(connection.engine)


def _dispose_engines_of(database: str) -> None:
    # a pooled connection left to a dropped database fails loudly when the pool is finalized at exit
    for engine in list(_ENGINES):
        if engine.url.database == database:
            engine.dispose()


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # a skip reason, not an error path
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real-client payloads and documented examples; missing fixtures fail the test rather than skip it."""
    if not (FIXTURES / "real-clients").is_dir():
        pytest.fail(f"test fixtures not found at {FIXTURES} (shipped in tests/fixtures/; DETECTOR_FIXTURES overrides)")
    return FIXTURES


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if BACKEND == "sqlite":
        url = f"sqlite:///{tmp_path / 'detector.db'}"
        upgrade(url)
        yield url
        return
    if BACKEND != "postgresql":
        raise pytest.UsageError(f"DETECTOR_TEST_DATABASE must be sqlite or postgresql, not {BACKEND!r}")
    yield from _fresh_postgres_database()


@pytest.fixture
def postgresql_database_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database whichever DETECTOR_TEST_DATABASE says: for the tests of what
    only PostgreSQL does (several workers sharing a queue, a read-only standby), which the SQLite run then
    runs too, against the PostgreSQL beside it."""
    yield from _fresh_postgres_database()


def _fresh_postgres_database() -> Iterator[str]:
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    name = f"detector_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    try:
        yield url
    finally:
        _dispose_engines_of(name)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def settings(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.startswith("DETECTOR_") and not key.startswith("DETECTOR_TEST") and key != "DETECTOR_FIXTURES":
            monkeypatch.delenv(key)
    return Settings(database_url=database_url, digest_interval_seconds=0.05)


@pytest.fixture
def factory(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def project(factory: sessionmaker[Session], settings: Settings) -> Project:
    with transaction(factory) as session:
        return create_project(session, slug="web", org=settings.org)


@pytest.fixture
def token(factory: sessionmaker[Session]) -> str:
    with transaction(factory) as session:
        return create_token(session, label="tests")


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """`detector serve` in a subprocess on loopback, on the test's database."""

    def __init__(
        self,
        database_url: str,
        tmp_path: Path,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.extra_args = extra_args or []
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")},
            "DETECTOR_DATABASE_URL": database_url,
            "DETECTOR_PUBLIC_URL": self.url,
            "DETECTOR_DIGEST_INTERVAL_SECONDS": "0.05",
            **(extra_env or {}),
        }
        self.log_path = tmp_path / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveServer:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "detector.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)),
                *self.extra_args,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 90  # a loaded CI machine can take half a minute to import the app
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"detector serve did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def live_server(database_url: str, tmp_path: Path, project: Project, token: str) -> Iterator[LiveServer]:
    server = LiveServer(database_url, tmp_path).start()
    yield server
    server.stop()


def wait_for(fn: Callable[[], Any], timeout: float = 15.0, every: float = 0.1) -> Any:
    """Poll `fn` until it returns something truthy; returns that value or None on timeout."""
    end = time.time() + timeout
    while time.time() < end:
        value = fn()
        if value:
            return value
        time.sleep(every)
    return None
