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
SIGNATURE_DEPLOY_KINDS = ("new_signature", "regression")
"""Kinds that blame a deploy for one signature; such an anomaly follows its signature across later deploys."""
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
    ):
        if field in values:
            setattr(existing, field, values[field])
    if values.get("details"):
        # What the pass says now joins what earlier passes recorded (later releases' verdicts).
        existing.details = {**(existing.details or {}), **values["details"]}
    existing.first_seen = min(existing.first_seen, values.get("first_seen", existing.first_seen))
    existing.updated_at = now
    if existing.state == "resolved":
        return existing, "updated"
    if not was_ended and _spike_ended(existing.details):
        return existing, "ended"
    if existing.sessions_affected >= max(previous_sessions * GROWTH_FACTOR, previous_sessions + 5):
        return existing, "grew"
    return existing, "updated"


def open_deploy_anomaly_for(
    session: Session,
    *,
    project_id: int,
    signature_id: int,
    environment: str,
    excluding_key: str,
    detected_since: datetime | None = None,
) -> Anomaly | None:
    """The earliest unresolved anomaly blaming a deploy for this signature in this environment, other than
    the one keyed `excluding_key` (and detected since `detected_since`, when given): a later deploy's
    finding for the same signature continues it (one incident, one alert) instead of opening another
    with new suspects."""
    query = select(Anomaly).where(
        Anomaly.project_id == project_id,
        Anomaly.signature_id == signature_id,
        Anomaly.environment == environment,
        Anomaly.kind.in_(SIGNATURE_DEPLOY_KINDS),
        Anomaly.state != "resolved",
        Anomaly.key != excluding_key,
    )
    if detected_since is not None:
        query = query.where(Anomaly.detected_at >= detected_since)
    return session.scalar(query.order_by(Anomaly.id).limit(1).with_for_update())


def _unresolved_spikes(
    session: Session, project_id: int, signature_id: int, environment: str, *, for_update: bool
) -> list[Anomaly]:
    query = (
        select(Anomaly)
        .where(
            Anomaly.project_id == project_id,
            Anomaly.signature_id == signature_id,
            Anomaly.environment == environment,
            Anomaly.kind == "spike",
            Anomaly.state != "resolved",
        )
        .order_by(Anomaly.id)
    )
    return list(session.scalars(query.with_for_update() if for_update else query))


def running_spike_for(
    session: Session, *, project_id: int, signature_id: int, environment: str, seen_since: datetime
) -> Anomaly | None:
    """The unresolved spike anomaly of this signature and environment that a pass saw since `seen_since`
    (`details.seen_at`, in the passes' own time, so replays of the past behave as live passes) and whose
    excursion has not ended, if any."""
    for anomaly in _unresolved_spikes(session, project_id, signature_id, environment, for_update=True):
        details = anomaly.details or {}
        seen = details.get("seen_at")
        if seen is None or datetime.fromisoformat(str(seen)) < seen_since:
            continue
        if not (details.get("spike") or {}).get("ended_at"):
            return anomaly
    return None


def spike_covering(
    session: Session, *, project_id: int, signature_id: int, environment: str, began: datetime
) -> Anomaly | None:
    """The unresolved spike anomaly of this signature and environment whose excursion (from its
    `details.spike.began` to its `ended_at`, or still running) holds `began`, if any: a rise found again
    later (by a deploy's test, whose onset estimate points back into it) is that excursion, not a new one."""
    for anomaly in _unresolved_spikes(session, project_id, signature_id, environment, for_update=False):
        state = (anomaly.details or {}).get("spike") or {}
        if not state.get("began"):
            continue
        start = datetime.fromisoformat(str(state["began"]).replace("Z", "+00:00"))
        end = state.get("ended_at")
        if start <= began and (end is None or began < datetime.fromisoformat(str(end).replace("Z", "+00:00"))):
            return anomaly
    return None


def continue_anomaly(
    anomaly: Anomaly,
    *,
    release: str,
    deploy_id: int | None,
    sessions: int,
    rate: float | None,
    seen_at: datetime | None = None,
) -> None:
    """Note on `anomaly` that a later release's own test also flagged its signature (no new alert)."""
    details = dict(anomaly.details or {})
    flagged = dict(details.get("also_flagged_in") or {})
    flagged[release] = {"deploy_id": deploy_id, "sessions_affected": sessions, "rate": rate}
    details["also_flagged_in"] = flagged
    if seen_at is not None:
        details["seen_at"] = seen_at.isoformat()
    anomaly.details = details
    anomaly.updated_at = datetime.now(UTC)


def tracked_deploy_anomalies(
    session: Session, *, project_id: int, deployed_after: datetime
) -> list[tuple[Anomaly, Deploy]]:
    """Unresolved signature anomalies of deploys since `deployed_after`, with their deploys, oldest first."""
    return [
        (anomaly, deploy)
        for anomaly, deploy in session.execute(
            select(Anomaly, Deploy)
            .join(Deploy, Deploy.id == Anomaly.deploy_id)
            .where(
                Anomaly.project_id == project_id,
                Anomaly.kind.in_(SIGNATURE_DEPLOY_KINDS),
                Anomaly.state != "resolved",
                Anomaly.signature_id.is_not(None),
                Deploy.deployed_at >= deployed_after,
            )
            .order_by(Anomaly.id)
        ).all()
    ]


def record_follow_up(
    anomaly: Anomaly,
    *,
    release: str,
    deploy_id: int,
    status: str,
    sessions: int,
    affected: int,
    rate: float,
    same_rate: bool,
) -> bool:
    """Keep what a later release says of the anomaly (`details.releases`); True when its status is news
    (first said, or changed), which is worth a line in the alert's thread."""
    details = dict(anomaly.details or {})
    releases = dict(details.get("releases") or {})
    previous = releases.get(release)
    releases[release] = {
        "deploy_id": deploy_id,
        "status": status,
        "sessions": sessions,
        "affected": affected,
        "rate": rate,
        "same_rate": same_rate,
    }
    details["releases"] = releases
    news = previous is None or previous.get("status") != status
    if news:
        details["latest_follow_up"] = release
        if status == "absent":
            details["likely_fixed_in"] = release
        elif details.get("likely_fixed_in") == release:
            details.pop("likely_fixed_in")
    anomaly.details = details
    if news:
        anomaly.updated_at = datetime.now(UTC)
    return news


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
