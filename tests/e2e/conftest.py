"""Fixtures for the end-to-end tests: real Sentry clients → `detector serve` → what the server stored.

The live server, project and token fixtures come from tests/conftest.py. `dsn` is what an SDK needs to
send to the live server; `read_api` reads back signatures and events through `/api/v1/`; `session_table`
reads the per-minute session counts (the rate denominators) the digest wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.store.models import Project, SessionMinute

if TYPE_CHECKING:
    from tests.conftest import LiveServer


@dataclass
class ReadApi:
    """The native read API of one project on a live server, with a Bearer token."""

    server: LiveServer
    headers: dict[str, str]
    slug: str

    def _get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(
            f"{self.server.url}/api/v1/projects/{self.slug}{path}",
            params=params,
            headers=self.headers,
            timeout=10,
        )

    def signatures(self, **params: Any) -> list[dict[str, Any]]:
        """Every signature of the project (all pages), as `GET .../signatures` lists them."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            response = self._get("/signatures", **params, **({"cursor": cursor} if cursor else {}))
            assert response.status_code == 200, response.text
            body = response.json()
            items += body["items"]
            cursor = body["next"]
            if not cursor:
                return items

    def event(self, event_id: str) -> dict[str, Any] | None:
        """The stored event, or None while it is still waiting for digest (404)."""
        response = self._get(f"/events/{event_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_for_events(self, event_ids: list[str], timeout: float = 20.0) -> dict[str, dict[str, Any]]:
        """Each of `event_ids` once stored; fails with the server log if one never arrives."""
        found: dict[str, dict[str, Any]] = {}

        def all_stored() -> bool:
            for event_id in event_ids:
                if event_id not in found and (event := self.event(event_id)) is not None:
                    found[event_id] = event
            return len(found) == len(event_ids)

        if not poll(all_stored, timeout):
            missing = sorted(set(event_ids) - set(found))
            pytest.fail(f"events {missing} were not stored within {timeout} s; server log:\n{self.tail()}")
        return found

    def wait_for_signatures(
        self, ready: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """The signature list once `ready(list)` holds (digest is asynchronous); fails with the log if not."""
        latest: list[dict[str, Any]] = []

        def check() -> bool:
            nonlocal latest
            latest = self.signatures()
            return ready(latest)

        if not poll(check, timeout):
            pytest.fail(f"signatures never became ready: {latest}\nserver log:\n{self.tail()}")
        return latest

    def tail(self) -> str:
        return self.server.log()[-3000:]


def poll(check: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(every)
    return check()


@dataclass
class SessionTable:
    """The session_minutes rows of one project, summed per release and environment."""

    factory: sessionmaker[Session]
    project_id: int

    def totals(self, *, release: str, environment: str) -> dict[str, int]:
        with self.factory() as session:
            row = session.execute(
                select(
                    func.coalesce(func.sum(SessionMinute.started), 0),
                    func.coalesce(func.sum(SessionMinute.errored), 0),
                    func.coalesce(func.sum(SessionMinute.crashed), 0),
                ).where(
                    SessionMinute.project_id == self.project_id,
                    SessionMinute.release == release,
                    SessionMinute.environment == environment,
                )
            ).one()
        return {"started": int(row[0]), "errored": int(row[1]), "crashed": int(row[2])}

    def wait_for_totals(
        self, expected: dict[str, int], *, release: str, environment: str, timeout: float = 20.0
    ) -> dict[str, int]:
        """The totals once they equal `expected`, or the last totals seen after `timeout`."""
        latest: dict[str, int] = {}

        def check() -> bool:
            nonlocal latest
            latest = self.totals(release=release, environment=environment)
            return latest == expected

        poll(check, timeout)
        return latest


@pytest.fixture
def dsn(live_server: LiveServer, project: Project) -> str:
    """The DSN a Sentry SDK needs to send to the `web` project on the live server."""
    return f"http://{project.public_key}@127.0.0.1:{live_server.port}/{project.id}"


@pytest.fixture
def read_api(live_server: LiveServer, auth: dict[str, str], project: Project) -> ReadApi:
    return ReadApi(server=live_server, headers=auth, slug=project.slug)


@pytest.fixture
def session_table(factory: sessionmaker[Session], project: Project) -> SessionTable:
    return SessionTable(factory=factory, project_id=project.id)
