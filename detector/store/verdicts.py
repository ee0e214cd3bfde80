"""Deploy verdicts: the counts each pass judged them on, the anomalies that make a deploy fail, and the
outbox of the failing webhook (one row per deploy)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from detector.errors import NotFound
from detector.store.anomalies import SIGNATURE_DEPLOY_KINDS
from detector.store.dialect import upsert_insert
from detector.store.models import Anomaly, Deploy, DeployVerdict, VerdictWebhook

DEPLOY_KINDS = (*SIGNATURE_DEPLOY_KINDS, "release_error_rate")
"""Anomaly kinds that make a deploy fail (a spike is nobody's deploy)."""


def failing_anomalies(session: Session, *, project_id: int, deploy: Deploy) -> list[Anomaly]:
    """The anomalies that make `deploy` fail, oldest first: those of the deploy itself, and those a later
    release's own test flagged again in it (`details.also_flagged_in`); muted ones do not count."""
    rows = session.scalars(
        select(Anomaly)
        .where(
            Anomaly.project_id == project_id,
            Anomaly.kind.in_(DEPLOY_KINDS),
            Anomaly.state != "muted",
            Anomaly.environment == deploy.environment,
            or_(Anomaly.deploy_id == deploy.id, Anomaly.detected_at >= deploy.deployed_at),
        )
        .order_by(Anomaly.id)
    )
    found = []
    for anomaly in rows:
        flagged = (anomaly.details or {}).get("also_flagged_in") or {}
        again = any((v or {}).get("deploy_id") == deploy.id for v in flagged.values())
        if anomaly.deploy_id == deploy.id or again:
            found.append(anomaly)
    return found


def save_verdict(
    session: Session,
    *,
    project_id: int,
    deploy_id: int,
    status: str,
    reason: str,
    measured_at: datetime,
    inputs: dict[str, Any],
) -> str | None:
    """Keep a pass's counts and verdict of the deploy; the previous status when it changed (`""` for a
    first verdict), None when it did not."""
    row = session.get(DeployVerdict, deploy_id, with_for_update=True)
    now = datetime.now(UTC)
    if row is None:
        session.add(
            DeployVerdict(
                deploy_id=deploy_id,
                project_id=project_id,
                status=status,
                reason=reason,
                measured_at=measured_at,
                inputs=inputs,
                changed_at=now,
            )
        )
        return ""
    previous = row.status
    row.reason, row.measured_at, row.inputs = reason, measured_at, inputs
    if previous == status:
        return None
    row.status, row.changed_at = status, now
    return previous


def verdict_row(session: Session, deploy_id: int) -> DeployVerdict | None:
    return session.get(DeployVerdict, deploy_id)


def project_deploy(session: Session, *, project_id: int, deploy_id: int) -> Deploy:
    deploy = session.get(Deploy, deploy_id)
    if deploy is None or deploy.project_id != project_id:
        raise NotFound(f"no deploy {deploy_id} in this project")
    return deploy


def latest_release_deploy(session: Session, *, project_id: int, release: str, environment: str | None) -> Deploy:
    """The newest deploy of `release` (to `environment`, when given)."""
    query = select(Deploy).where(Deploy.project_id == project_id, Deploy.release == release)
    if environment:
        query = query.where(Deploy.environment == environment)
    deploy = session.scalar(query.order_by(Deploy.deployed_at.desc(), Deploy.id.desc()).limit(1))
    if deploy is None:
        where = f" to {environment}" if environment else ""
        raise NotFound(f"no deploy of release {release!r}{where} in this project")
    return deploy


def enqueue_webhook(session: Session, *, project_id: int, deploy_id: int, payload: dict[str, Any]) -> bool:
    """Queue the deploy's failing webhook unless one was queued before (once per deploy); True if queued."""
    now = datetime.now(UTC)
    inserted = session.execute(
        upsert_insert(session, VerdictWebhook)
        .values(
            deploy_id=deploy_id,
            project_id=project_id,
            payload=payload,
            state="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["deploy_id"])
    )
    return bool(inserted.rowcount)


def claim_due_webhooks(session: Session, *, owner: str, now: datetime, lease: timedelta, limit: int) -> list[int]:
    """Lease the due pending webhooks (rows another worker holds are skipped on PostgreSQL)."""
    query = (
        select(VerdictWebhook.id)
        .where(
            VerdictWebhook.state == "pending",
            VerdictWebhook.next_attempt_at <= now,
            or_(VerdictWebhook.lease_until.is_(None), VerdictWebhook.lease_until < now),
        )
        .order_by(VerdictWebhook.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if ids:
        session.execute(
            update(VerdictWebhook).where(VerdictWebhook.id.in_(ids)).values(lease_owner=owner, lease_until=now + lease)
        )
    return ids


def webhook_row(session: Session, webhook_id: int) -> VerdictWebhook | None:
    return session.get(VerdictWebhook, webhook_id)
