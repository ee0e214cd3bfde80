"""What a verdict change sets off: the project's failing webhook (queued once per deploy, in the
transaction that records the verdict, and delivered by the worker with retries like Slack alerts) and a
reply in the Slack thread of the anomaly that made the deploy fail."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from detector.alerts.verdict_webhook import post_verdict
from detector.config import Settings
from detector.model.verdict import VerdictStatus
from detector.notify import enqueue_verdict_reply
from detector.store.db import transaction
from detector.store.models import Deploy, Project
from detector.store.verdicts import claim_due_webhooks, enqueue_webhook, project_deploy, webhook_row
from detector.times import json_ready
from detector.verdicts import VerdictChange, current_verdict, verdict_as_dict

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 20
BACKOFF_CAP = timedelta(minutes=10)


def enqueue_verdict_messages(
    session: Session, project: Project, changes: Iterable[VerdictChange], *, channel: str | None, public_url: str
) -> int:
    """For each deploy that turned `failing`: its webhook (if the project has one) and a thread reply on
    its first anomaly's alert (bot channel). Returns how many messages were queued."""
    queued = 0
    for change in changes:
        if change.status != VerdictStatus.FAILING:
            continue
        deploy = project_deploy(session, project_id=project.id, deploy_id=change.deploy_id)
        payload = verdict_payload(session, project, deploy, public_url)
        if project.verdict_webhook_url:
            queued += enqueue_webhook(session, project_id=project.id, deploy_id=deploy.id, payload=payload)
        if payload["anomalies"]:
            summary = {k: payload[k] for k in ("status", "reason", "release", "deploy_id")}
            queued += enqueue_verdict_reply(session, payload["anomalies"][0]["id"], summary, channel=channel)
    return queued


def verdict_payload(session: Session, project: Project, deploy: Deploy, public_url: str) -> dict[str, Any]:
    verdict, measured_at = current_verdict(session, project, deploy)
    body = json_ready(verdict_as_dict(deploy, verdict, measured_at=measured_at))
    base = f"{public_url.rstrip('/')}/api/v1/projects/{project.slug}"
    return {**body, "project": project.slug, "verdict_url": f"{base}/deploys/{deploy.id}/verdict"}


def deliver_verdict_webhooks(factory: sessionmaker[Session], settings: Settings, *, limit: int = 20) -> int:
    """Send the due failing webhooks; how many the receivers took. Never raises for their failures."""
    owner = f"{socket.gethostname()}:{os.getpid()}"
    with transaction(factory) as session:
        ids = claim_due_webhooks(session, owner=owner, now=datetime.now(UTC), lease=LEASE, limit=limit)
    sent = 0
    for webhook_id in ids:
        with factory() as session:
            row = webhook_row(session, webhook_id)
            project = session.get(Project, row.project_id) if row else None
            if row is None or project is None:
                continue
            url, secret, payload = project.verdict_webhook_url, project.verdict_webhook_secret, dict(row.payload)
        if not url:
            _finish(factory, webhook_id, ok=False, error="the project has no webhook URL any more", permanent=True)
            continue
        result = post_verdict(url, secret, payload, timeout=settings.slack_timeout_seconds)
        _finish(
            factory, webhook_id, ok=result.ok, error=result.error, permanent=result.permanent,
            retry_after=result.retry_after,
        )  # fmt: skip
        sent += result.ok
    return sent


def _finish(
    factory: sessionmaker[Session],
    webhook_id: int,
    *,
    ok: bool,
    error: str | None,
    permanent: bool,
    retry_after: float | None = None,
) -> None:
    with transaction(factory) as session:
        row = webhook_row(session, webhook_id)
        assert row is not None
        row.attempts += 1
        row.lease_owner, row.lease_until = None, None
        if ok:
            row.state, row.sent_at, row.last_error = "sent", datetime.now(UTC), None
            log.info("failing webhook of deploy %s delivered", row.deploy_id)
            return
        row.last_error = error
        if permanent or row.attempts >= MAX_ATTEMPTS:
            row.state = "failed"
            log.error("failing webhook of deploy %s failed for good: %s", row.deploy_id, error)
            return
        wait = timedelta(seconds=retry_after) if retry_after is not None else timedelta(seconds=2**row.attempts)
        row.next_attempt_at = datetime.now(UTC) + min(wait, BACKOFF_CAP)
        log.warning("failing webhook of deploy %s not delivered (%s); next try in %s", row.deploy_id, error, wait)
