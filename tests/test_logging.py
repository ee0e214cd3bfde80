"""What `detector serve` tells its operator: where it listens, each anomaly, each alert; JSON on request."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.logs import JsonFormatter
from detector.scheduling import run_project_pass
from detector.store.models import Project
from tests.alerts.slack_standin import SlackStandin
from tests.conftest import LiveServer, wait_for
from tests.test_notify import seed_incident


def test_json_logs_say_where_it_listens_what_opened_and_what_was_delivered(
    database_url: str, tmp_path: Path, factory: sessionmaker[Session], project: Project, token: str
) -> None:
    seed_incident(factory, project)
    with SlackStandin() as slack:
        server = LiveServer(
            database_url,
            tmp_path,
            extra_env={
                "DETECTOR_LOG_FORMAT": "json",
                "DETECTOR_DETECT_INTERVAL_SECONDS": "0.5",
                "DETECTOR_SLACK_WEBHOOK_URL": slack.webhook_url,
            },
        ).start()
        try:
            delivered = wait_for(lambda: "delivered to webhook" in server.log(), timeout=60)
        finally:
            server.stop()
    assert delivered, server.log()[-3000:]
    records = [json.loads(line) for line in server.log().splitlines() if line.strip()]  # every line is JSON
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    start = next(r for r in records if r["msg"].startswith("listening on"))
    assert server.url in start["msg"] and "a worker in a child process" in start["msg"]
    opened = [r for r in records if r.get("change") == "created" and r.get("kind") == "new_signature"]
    assert opened, [r["msg"] for r in records]
    assert "map is not a function" in opened[0]["title"] and opened[0]["release"] == "web@1.2.0"
    assert opened[0]["deploy_id"] is not None and "alert queued for Slack (webhook)" in opened[0]["msg"]
    assert any(r["msg"].startswith("worker on database") for r in records)


def test_an_anomaly_without_slack_is_still_logged(
    settings: Settings, factory: sessionmaker[Session], project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    deployed = seed_incident(factory, project)
    with caplog.at_level(logging.INFO, logger="detector.scheduling"):
        changes = run_project_pass(factory, settings, project_id=project.id, at=deployed + timedelta(minutes=4))
    created = [c for c in changes if c.change == "created"]
    assert created
    lines = [r.getMessage() for r in caplog.records if r.name == "detector.scheduling"]
    for change in created:
        line = next(text for text in lines if text.startswith(f"anomaly {change.anomaly_id} created: {change.kind}"))
        assert "no alert: Slack is not configured" in line and "deploy " in line
    # the same record as JSON keeps the structured fields
    record = next(r for r in caplog.records if getattr(r, "anomaly_id", None) == created[0].anomaly_id)
    as_json = json.loads(JsonFormatter().format(record))
    assert as_json["anomaly_id"] == created[0].anomaly_id and as_json["alert_channel"] is None
