"""The pass's segment frames from the store: sessions per segment minute, and the deploy's candidate
signatures' affected sessions per segment, exact distinct counts from the events."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from detector.deploys.service import record_deploy
from detector.detection import load_frames
from detector.intake.digest import digest_all
from detector.store.db import transaction
from detector.store.models import Project
from detector.store.queue import enqueue_items

SAFARI_14 = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/14.1.2 Safari/605.1.15"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
DEPLOY = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def event(value: str, release: str, at: datetime, user: str, trace: str, user_agent: str) -> bytes:
    return json.dumps(
        {
            "event_id": uuid.uuid4().hex,
            "timestamp": at.timestamp(),
            "platform": "javascript",
            "release": release,
            "environment": "production",
            "user": {"id": user},
            "request": {"url": "https://shop.example/", "headers": {"User-Agent": user_agent}},
            "contexts": {"trace": {"trace_id": trace, "span_id": trace[:16]}},
            "exception": {
                "values": [
                    {
                        "type": "TypeError",
                        "value": value,
                        "stacktrace": {
                            "frames": [
                                {"filename": "src/a.js", "function": value.split()[0], "lineno": 1, "in_app": True}
                            ]
                        },
                    }
                ]
            },
        }
    ).encode()


def session(sid: str, release: str, at: datetime, user_agent: str) -> bytes:
    return json.dumps(
        {
            "sid": sid,
            "init": True,
            "started": at.isoformat(),
            "status": "exited",
            "attrs": {"release": release, "environment": "production", "user_agent": user_agent},
        }
    ).encode()


def test_the_candidates_counts_per_segment_are_distinct_over_the_window(
    factory: sessionmaker[Session], project: Project
) -> None:
    minute = timedelta(minutes=1)
    items = [
        # one Safari 14 user whose page errs in three minutes after the deploy: one user, one session
        *(("event", event("cart broke", "web@2", DEPLOY + k * minute, "u1", "a" * 32, SAFARI_14)) for k in range(3)),
        ("event", event("cart broke", "web@2", DEPLOY + 2 * minute, "u2", "b" * 32, SAFARI_14)),
        ("event", event("cart broke", "web@2", DEPLOY + 2 * minute, "u3", "c" * 32, FIREFOX)),
        # before the deploy, on the old release only: not a candidate of the deploy
        ("event", event("old thing", "web@1", DEPLOY - 30 * minute, "u4", "d" * 32, FIREFOX)),
        ("session", session("1" * 32, "web@2", DEPLOY, SAFARI_14)),
        ("session", session("2" * 32, "web@2", DEPLOY + minute, SAFARI_14)),
        ("session", session("3" * 32, "web@2", DEPLOY + minute, FIREFOX)),
    ]
    now = datetime.now(UTC)
    with transaction(factory) as db:
        enqueue_items(
            db,
            [
                {"project_id": project.id, "item_type": kind, "event_id": None, "received_at": now, "payload": payload}
                for kind, payload in items
            ],
        )
        record_deploy(
            db,
            project=db.get(Project, project.id),
            release="web@2",
            environment="production",
            date_started=None,
            date_finished=DEPLOY,
            name=None,
            url=None,
            sha=None,
            source="api",
        )
    digest_all(factory)
    with factory() as db:
        frames = load_frames(db, project_id=project.id, at=DEPLOY + 10 * minute, lookback=timedelta(days=14))
    sig = frames["segment_sig_counts"]
    assert set(sig["signature_id"]) == {frames["sig_counts"].query("release == 'web@2'")["signature_id"].iloc[0]}
    by_segment = sig.astype({"segment": str}).groupby("segment")[["events", "users", "sessions"]].sum()
    assert by_segment.to_dict("index") == {
        "Firefox 133": {"events": 1, "users": 1, "sessions": 1},
        "Safari 14": {"events": 4, "users": 2, "sessions": 2},
    }
    # the first Safari 14 user counts in the minute it was first affected
    safari = sig[sig["segment"].astype(str) == "Safari 14"].sort_values("minute")
    assert safari["users"].tolist() == [1, 0, 1]
    sessions = frames["segment_sessions"].astype({"segment": str})
    assert sessions.groupby("segment")["started"].sum().to_dict() == {"Firefox 133": 1, "Safari 14": 2}
