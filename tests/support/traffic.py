"""Minutes of browser traffic as Sentry envelopes: session updates and TypeError events, posted to the app."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import numpy as np
from fastapi.testclient import TestClient

from detector.store.models import Project


def session_item(sid: str, release: str, started: datetime, errors: int) -> bytes:
    payload = {
        "sid": sid,
        "init": True,
        "started": started.isoformat(),
        "timestamp": started.isoformat(),
        "status": "exited" if errors == 0 else "unhandled",
        "errors": errors,
        "attrs": {"release": release, "environment": "production"},
    }
    return b'{"type":"session"}\n' + json.dumps(payload).encode()


def error_item(release: str, at: datetime, user: int) -> bytes:
    event = {
        "event_id": uuid.uuid4().hex,
        "timestamp": at.timestamp(),
        "platform": "javascript",
        "release": release,
        "environment": "production",
        "user": {"id": f"u{user}"},
        "request": {"url": "https://shop.example/billing"},
        "exception": {
            "values": [
                {
                    "type": "TypeError",
                    "value": "entitlements.map is not a function",
                    "stacktrace": {
                        "frames": [
                            {"filename": "src/main.js", "function": "run", "lineno": 9, "in_app": True},
                            {
                                "filename": "src/features/PaidFeatures.js",
                                "function": "renderPaidFeatures",
                                "lineno": 4,
                                "in_app": True,
                                "context_line": "  return entitlements.map((e) => e.feature);",
                            },
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
    error_share: float,
    rng: np.random.Generator,
) -> None:
    items = []
    for _ in range(sessions):
        started = minute + timedelta(seconds=float(rng.uniform(0, 59)))
        fails = bool(rng.random() < error_share)
        items.append(session_item(uuid.uuid4().hex, release, started, int(fails)))
        if fails:
            items.append(error_item(release, started + timedelta(seconds=0.5), user=int(rng.integers(1e6))))
    for start in range(0, len(items), 50):
        body = b"{}\n" + b"\n".join(items[start : start + 50])
        url = f"/api/{project.id}/envelope/?sentry_key={project.public_key}"
        assert client.post(url, content=body).status_code == 200
