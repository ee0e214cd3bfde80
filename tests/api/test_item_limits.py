"""Session items are held to the item size limit, as events are (issue 18, item 4)."""

from __future__ import annotations

import json
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.store.models import Project, RawItem


def test_a_session_item_over_the_item_limit_is_413(
    client: TestClient, project: Project, settings: Settings, factory: sessionmaker[Session]
) -> None:
    padding = "x" * settings.max_event_bytes  # an attribute the parser ignores, past the item limit
    for item_type, payload in [
        ("session", {"sid": uuid.uuid4().hex, "started": "2026-01-01T00:00:00Z", "attrs": {"release": "web@1"}}),
        ("sessions", {"aggregates": [{"started": "2026-01-01T00:00:00Z", "exited": 1}], "attrs": {"release": "w"}}),
    ]:
        body = b"\n".join(
            [b"{}", json.dumps({"type": item_type}).encode(), json.dumps({**payload, "pad": padding}).encode()]
        )
        answer = client.post(f"/api/{project.id}/envelope/?sentry_key={project.public_key}", content=body)
        assert answer.status_code == 413, answer.text
        assert f"{item_type} item of" in answer.json()["detail"]
        assert f"over the limit of {settings.max_event_bytes}" in answer.json()["detail"]
        small = b"\n".join([b"{}", json.dumps({"type": item_type}).encode(), json.dumps(payload).encode()])
        assert (
            client.post(f"/api/{project.id}/envelope/?sentry_key={project.public_key}", content=small).status_code
            == 200
        )
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(RawItem)) == 2  # the two within the limit
