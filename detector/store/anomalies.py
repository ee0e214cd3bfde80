"""Anomalies: one row per (kind, signature, deploy), updated as it grows; their states and read queries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from detector.errors import Conflict, InvalidInput, NotFound
from detector.store.models import Anomaly, Deploy

STATES = ("open", "acknowledged", "resolved", "muted")
KINDS = ("new_signature", "regression", "release_error_rate", "spike")
STATE_BY_ACTION = {"acknowledge": "acknowledged", "resolve": "resolved", "mute": "muted", "reopen": "open"}

GROWTH_FACTOR = 1.5
"""An open anomaly counts as grown (worth a thread update) when its affected sessions grew by this factor."""


def upsert_anomaly(session: Session, *, project_id: int, values: dict[str, Any]) -> tuple[Anomaly, str]:
    """Insert or update the anomaly with `values["key"]`; says what happened: created, grew, ended, updated.

    "ended": a spike whose excursion this update marks as over (`details["spike"]["ended_at"]` newly
    set); it is said once, the pass that saw the end."""
    existing = session.scalar(
        select(Anomaly).where(Anomaly.project_id == project_id, Anomaly.key == values["key"]).with_for_update()
    )
    now = datetime.now(UTC)
    if existing is None:
        anomaly = Anomaly(project_id=project_id, state="open", updated_at=now, **values)
        session.add(anomaly)
        session.flush()
        return anomaly, "created"
    previous_sessions = existing.sessions_affected
    was_ended = _spike_ended(existing.details)
    for field in (
        "events",
        "users",
        "sessions_affected",
        "rate",
        "baseline_rate",
        "score",
        "segments",
        "details",
    ):
        if field in values:
            setattr(existing, field, values[field])
    existing.first_seen = min(existing.first_seen, values.get("first_seen", existing.first_seen))
    existing.updated_at = now
    if existing.state == "resolved":
        return existing, "updated"
    if not was_ended and _spike_ended(existing.details):
        return existing, "ended"
    if existing.sessions_affected >= max(previous_sessions * GROWTH_FACTOR, previous_sessions + 5):
        return existing, "grew"
    return existing, "updated"


def _spike_ended(details: dict[str, Any] | None) -> bool:
    spike = (details or {}).get("spike") or {}
    return spike.get("ended_at") is not None


def spike_ended_at(anomaly: Anomaly) -> datetime | None:
    """When a spike anomaly's excursion ended (back at its usual rate), or None while it runs."""
    spike = (anomaly.details or {}).get("spike") or {}
    ended = spike.get("ended_at")
    if ended is None:
        return None
    return datetime.fromisoformat(str(ended).replace("Z", "+00:00"))


def list_anomalies(
    session: Session,
    *,
    project_id: int,
    kind: str | None = None,
    state: str | None = None,
    release: str | None = None,
    environment: str | None = None,
    deploy_id: int | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Anomaly]:
    """Newest first; `before_id` is the keyset cursor."""
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if state is not None and state not in STATES:
        raise InvalidInput(f"unknown state {state!r}; one of {', '.join(STATES)}")
    stmt = select(Anomaly).where(Anomaly.project_id == project_id)
    for column, value in (
        (Anomaly.kind, kind),
        (Anomaly.state, state),
        (Anomaly.release, release),
        (Anomaly.environment, environment),
        (Anomaly.deploy_id, deploy_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(Anomaly.detected_at >= since)
    if before_id is not None:
        stmt = stmt.where(Anomaly.id < before_id)
    return list(session.scalars(stmt.order_by(Anomaly.id.desc()).limit(limit + 1)))


def get_anomaly(session: Session, *, project_id: int, anomaly_id: int) -> Anomaly:
    anomaly = session.get(Anomaly, anomaly_id)
    if anomaly is None or anomaly.project_id != project_id:
        raise NotFound(f"no anomaly {anomaly_id} in this project")
    return anomaly


def set_anomaly_state(session: Session, *, project_id: int, anomaly_id: int, action: str) -> Anomaly:
    if action not in STATE_BY_ACTION:
        raise InvalidInput(f"unknown action {action!r}; one of {', '.join(STATE_BY_ACTION)}")
    anomaly = get_anomaly(session, project_id=project_id, anomaly_id=anomaly_id)
    target = STATE_BY_ACTION[action]
    if anomaly.state == target:
        raise Conflict(f"anomaly {anomaly_id} is already {target}")
    anomaly.state = target
    anomaly.updated_at = datetime.now(UTC)
    return anomaly


def anomaly_url(public_url: str, project_slug: str, anomaly_id: int) -> str:
    return f"{public_url.rstrip('/')}/api/v1/projects/{project_slug}/anomalies/{anomaly_id}"


def anomaly_as_dict(
    anomaly: Anomaly, deploy: Deploy | None = None, *, project_slug: str, public_url: str
) -> dict[str, Any]:
    minutes_after = None
    if deploy is not None:
        minutes_after = round((anomaly.detected_at - deploy.deployed_at).total_seconds() / 60, 1)
    return {
        "id": anomaly.id,
        "kind": anomaly.kind,
        "state": anomaly.state,
        "signature_id": anomaly.signature_id,
        "title": anomaly.title,
        "release": anomaly.release,
        "environment": anomaly.environment,
        "deploy_id": anomaly.deploy_id,
        "deploy": None
        if deploy is None
        else {
            "id": deploy.id,
            "release": deploy.release,
            "environment": deploy.environment,
            "deployed_at": deploy.deployed_at,
            "sha": deploy.sha,
        },
        "minutes_after_deploy": minutes_after,
        "first_seen": anomaly.first_seen,
        "detected_at": anomaly.detected_at,
        "crossed_at": anomaly.crossed_at,
        "updated_at": anomaly.updated_at,
        "events": anomaly.events,
        "users": anomaly.users,
        "sessions_affected": anomaly.sessions_affected,
        "rate": anomaly.rate,
        "baseline_rate": anomaly.baseline_rate,
        "score": anomaly.score,
        "segments": anomaly.segments,
        "suspects": anomaly.suspects,
        "evidence_unavailable": anomaly.evidence_unavailable,
        "details": anomaly.details,
        "url": anomaly_url(public_url, project_slug, anomaly.id),
    }
