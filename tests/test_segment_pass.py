"""A crash in one browser, end to end: browser sessions and events with their user agents through the real
intake → digest → deploy → detection passes → an anomaly (API and Slack alert) that names the browser."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from detector.alerts.blocks import alert_blocks
from detector.config import Settings
from detector.deploys.service import record_deploy
from detector.detection import run_detection
from detector.intake.digest import digest_all
from detector.notify import alert_content_for
from detector.store.db import transaction
from detector.store.models import Project
from detector.store.projects import create_token

USER_AGENTS = {
    "Chrome 131": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Safari 17": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Firefox 133": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Safari 14": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/14.1.2 Safari/605.1.15",
}
MIX = {"Chrome 131": 0.6, "Safari 17": 0.2, "Firefox 133": 0.15, "Safari 14": 0.05}


def session_item(sid: str, release: str, started: datetime, user_agent: str, errors: int) -> bytes:
    """An @sentry/browser session update: `attrs.user_agent` as the SDK sends it."""
    payload = {
        "sid": sid,
        "init": True,
        "started": started.isoformat(),
        "timestamp": started.isoformat(),
        "status": "exited" if errors == 0 else "unhandled",
        "errors": errors,
        "attrs": {"release": release, "environment": "production", "user_agent": user_agent},
    }
    return b'{"type":"session"}\n' + json.dumps(payload).encode()


def crash_item(release: str, at: datetime, user_agent: str, trace_id: str) -> bytes:
    """The browser's uncaught error: an API Safari 14 lacks (`Array.prototype.at`)."""
    event = {
        "event_id": uuid.uuid4().hex,
        "timestamp": at.timestamp(),
        "platform": "javascript",
        "release": release,
        "environment": "production",
        "user": {"id": trace_id[:12]},
        "request": {"url": "https://shop.example/cart", "headers": {"User-Agent": user_agent}},
        "contexts": {"trace": {"trace_id": trace_id, "span_id": trace_id[:16]}},
        "exception": {
            "values": [
                {
                    "type": "TypeError",
                    "value": "items.at is not a function",
                    "mechanism": {"type": "onerror", "handled": False},
                    "stacktrace": {
                        "frames": [
                            {"filename": "src/cart/total.js", "function": "lastItem", "lineno": 12, "in_app": True}
                        ]
                    },
                }
            ]
        },
    }
    return b'{"type":"event"}\n' + json.dumps(event).encode()


def post_minute(
    client: TestClient,
    project: Project,
    minute: datetime,
    release: str,
    sessions: int,
    crash_rate: float,
    rng: np.random.Generator,
) -> None:
    names = list(MIX)
    items = []
    for browser in rng.choice(names, size=sessions, p=[MIX[n] for n in names]):
        user_agent = USER_AGENTS[str(browser)]
        started = minute + timedelta(seconds=float(rng.uniform(0, 59)))
        crashes = browser == "Safari 14" and bool(rng.random() < crash_rate)
        items.append(session_item(uuid.uuid4().hex, release, started, user_agent, int(crashes)))
        if crashes:
            items.append(crash_item(release, started + timedelta(seconds=0.5), user_agent, uuid.uuid4().hex))
    for start in range(0, len(items), 60):
        body = b"{}\n" + b"\n".join(items[start : start + 60])
        response = client.post(f"/api/{project.id}/envelope/?sentry_key={project.public_key}", content=body)
        assert response.status_code == 200, response.text


def deploy(factory: sessionmaker[Session], project: Project, release: str, at: datetime) -> int:
    with transaction(factory) as session:
        return record_deploy(
            session,
            project=session.get(Project, project.id),
            release=release,
            environment="production",
            date_started=None,
            date_finished=at,
            name=None,
            url=None,
            sha=None,
            source="api",
        ).id


def test_a_crash_in_one_browser_is_an_anomaly_that_names_the_browser(
    settings: Settings, factory: sessionmaker[Session], project: Project
) -> None:
    rng = np.random.default_rng(14)
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    deploy_at = start + timedelta(minutes=10)
    with TestClient(create_app(settings)) as client:
        deploy(factory, project, "web@1.1.0", start)
        for m in range(10):
            post_minute(client, project, start + timedelta(minutes=m), "web@1.1.0", 100, 0.0, rng)
        deploy_id = deploy(factory, project, "web@1.2.0", deploy_at)
        created = None
        for m in range(0, 60):
            minute = deploy_at + timedelta(minutes=m)
            post_minute(client, project, minute, "web@1.2.0", 100, 0.08, rng)
            if m % 5 != 4:
                continue
            digest_all(factory)
            changes = run_detection(factory, project_id=project.id, at=minute + timedelta(seconds=59))
            created = next((c for c in changes if c.change == "created"), None)
            if created is not None:
                break
        assert created is not None, "the Safari 14 crash was not flagged within the hour"
        assert created.kind == "new_signature"
        minutes_after_deploy = m + 1
        with transaction(factory) as session:
            token = create_token(session, label="segments")
        detail = client.get(
            f"/api/v1/projects/{project.slug}/anomalies/{created.anomaly_id}",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    assert minutes_after_deploy <= 30
    assert detail["deploy_id"] == deploy_id
    assert ".at is not a function" in detail["title"]
    assert detail["details"]["segment"] == "Safari 14"
    assert detail["details"]["summary"].startswith("Safari 14 only: ")
    assert detail["details"]["summary"].endswith("% of its sessions")
    assert 0.02 <= detail["details"]["segment_rate"] <= 0.2
    with factory() as session:
        message = alert_blocks(alert_content_for(session, created.anomaly_id, settings.public_url))
    assert "Safari 14 only: " in message["text"]
    assert "of its sessions" in json.dumps(message["blocks"])
