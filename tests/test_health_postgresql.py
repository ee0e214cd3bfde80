"""/healthz on a PostgreSQL that stops taking writes (a standby after failover): 503 naming it, and back
to 200 when writes return. PostgreSQL only, so the SQLite run runs it too, on the PostgreSQL beside it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from detector.store.models import Project
from tests.conftest import LiveServer, wait_for
from tests.test_health import END_SESSIONS, FAST_HEARTBEAT, health


@pytest.fixture
def database_url(postgresql_database_url: str) -> str:
    return postgresql_database_url


@pytest.fixture
def server(database_url: str, tmp_path: Path, project: Project) -> Iterator[LiveServer]:
    live = LiveServer(database_url, tmp_path, extra_env=FAST_HEARTBEAT).start()
    yield live
    live.stop()


def test_healthz_answers_503_when_the_database_cannot_be_written(
    server: LiveServer, database_url: str, factory: sessionmaker[Session]
) -> None:
    assert wait_for(lambda: health(server).status_code == 200, timeout=60)
    factory.kw["bind"].dispose()  # this test's own pooled connections are not the server's to end
    name = database_url.rsplit("/", 1)[1]
    admin = create_engine(database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
            # new sessions only: end the server's, so its pool reconnects into read-only ones
            connection.execute(END_SESSIONS, {"n": name})
        assert wait_for(lambda: health(server).status_code == 503, timeout=20)
        answer = health(server).json()
        assert "the database cannot be written" in answer["detail"] and "read-only" in answer["detail"]
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off'))
            connection.execute(END_SESSIONS, {"n": name})
        admin.dispose()
    assert wait_for(lambda: health(server).status_code == 200, timeout=30), health(server).text
