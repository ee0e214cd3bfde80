"""CORS only on the intake routes, with an allow-list (issue 18, item 8): the browser SDK may post events
from the allowed origins; the query API answers no `Access-Control-Allow-Origin` at all. Through the app
in-process and through `detector serve`, whose intake skips the app's middleware (`FastIntake`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.config import Settings
from detector.store.models import Project, RawItem
from tests.conftest import LiveServer

SHOP = "https://shop.example"
EVIL = "https://evil.example"


class Client(Protocol):
    def request(self, method: str, url: str, **kwargs: object) -> httpx.Response: ...


def queued(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(RawItem)) or 0)


def post_event(client: Client, project: Project, origin: str | None) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    body = {"event_id": uuid.uuid4().hex, "message": "boom", "platform": "javascript"}
    return client.request(
        "POST", f"/api/{project.id}/store/?sentry_key={project.public_key}", json=body, headers=headers
    )


def preflight(client: Client, path: str, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    return client.request("OPTIONS", path, headers=headers)


class Live:
    """httpx against a live server, spoken like TestClient (paths relative to the server)."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server

    def request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, self.server.url + url, timeout=10, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["in-process", "serve"])
def client_for(
    request: pytest.FixtureRequest, settings: Settings, database_url: str, tmp_path: Path
) -> Iterator[object]:
    """A function: allowed origins (None: the default) -> a client of an app with them."""
    opened: list[object] = []

    def make(origins: str | None) -> Client:
        if request.param == "in-process":
            chosen = (
                settings
                if origins is None
                else settings.model_copy(update={"cors_allowed_origins": origins.split(",")})
            )
            client = TestClient(create_app(chosen))
            client.__enter__()
            opened.append(client)
            return client
        env = {} if origins is None else {"DETECTOR_CORS_ALLOWED_ORIGINS": origins}
        # no worker: the queue then holds exactly what intake kept, refused requests included or not
        server = LiveServer(database_url, tmp_path, extra_env=env, extra_args=["--no-worker"]).start()
        opened.append(server)
        return Live(server)

    yield make
    for thing in opened:
        if isinstance(thing, TestClient):
            thing.__exit__(None, None, None)
        else:
            thing.stop()  # type: ignore[attr-defined]


def test_by_default_any_page_may_post_events_but_the_query_api_answers_no_cors(
    client_for: object, project: Project, auth: dict[str, str]
) -> None:
    client = client_for(None)  # type: ignore[operator]
    sent = post_event(client, project, EVIL)
    assert sent.status_code == 200, sent.text
    assert sent.headers["access-control-allow-origin"] == "*"
    assert "Retry-After" in sent.headers["access-control-expose-headers"]
    allowed = preflight(client, f"/api/{project.id}/envelope/", EVIL)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "*"
    assert "POST" in allowed.headers["access-control-allow-methods"]

    read = client.request("GET", "/api/v1/projects", headers={**auth, "Origin": EVIL})
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers
    asked = preflight(client, "/api/v1/projects", EVIL)
    assert "access-control-allow-origin" not in asked.headers
    assert asked.status_code >= 400


def test_an_allow_list_admits_its_origins_and_refuses_other_pages_with_403(
    client_for: object, project: Project, factory: sessionmaker[Session]
) -> None:
    client = client_for(f"{SHOP},http://localhost:3000")  # type: ignore[operator]
    sent = post_event(client, project, SHOP)
    assert sent.status_code == 200, sent.text
    assert sent.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in sent.headers["vary"]
    before = queued(factory)

    refused = post_event(client, project, EVIL)
    assert refused.status_code == 403
    assert EVIL in refused.json()["detail"] and "DETECTOR_CORS_ALLOWED_ORIGINS" in refused.json()["detail"]
    assert "access-control-allow-origin" not in refused.headers
    assert queued(factory) == before  # nothing of the refused request was kept
    asked = preflight(client, f"/api/{project.id}/store/", EVIL)
    assert asked.status_code == 403 and "access-control-allow-origin" not in asked.headers

    server_side = post_event(client, project, None)  # no Origin: a server SDK, not a page
    assert server_side.status_code == 200
    assert "access-control-allow-origin" not in server_side.headers


def test_an_origin_setting_that_is_not_an_origin_is_refused() -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        Settings(cors_allowed_origins="shop.example")
