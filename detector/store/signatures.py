"""Read queries over signatures and events, shaped for the API and the notebook client."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from detector.errors import NotFound
from detector.store.models import Event, Signature, SignatureMinute


def user_identity() -> Any:
    """Who an event counts as, spelled as in the `ix_events_bucket_user` index so queries can use it."""
    return func.coalesce(Event.user_key, Event.session_key, Event.event_id)


def list_signatures(
    session: Session,
    *,
    project_id: int,
    release: str | None = None,
    environment: str | None = None,
    since: datetime | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Signatures seen in the filtered window, by id, with event and distinct-user totals and releases.

    The page is chosen first (signatures with any minute in the window); totals are then computed for
    that page only, so the cost follows the page, not the project's history.
    """
    window = select(SignatureMinute.signature_id).where(SignatureMinute.signature_id == Signature.id)
    if release:
        window = window.where(SignatureMinute.release == release)
    if environment:
        window = window.where(SignatureMinute.environment == environment)
    if since:
        window = window.where(SignatureMinute.minute >= since.replace(second=0, microsecond=0))
    stmt = (
        select(Signature)
        .where(Signature.project_id == project_id, window.exists())
        .order_by(Signature.id)
        .limit(limit + 1)
    )
    if after_id is not None:
        stmt = stmt.where(Signature.id > after_id)
    signatures = list(session.scalars(stmt))
    ids = [sig.id for sig in signatures]
    if not ids:
        return []

    def filtered(query: Any, model: Any) -> Any:
        if release:
            query = query.where(model.release == release)
        if environment:
            query = query.where(model.environment == environment)
        if since:
            query = query.where(model.minute >= since.replace(second=0, microsecond=0))
        return query

    events = dict(
        session.execute(
            filtered(
                select(SignatureMinute.signature_id, func.sum(SignatureMinute.events)).where(
                    SignatureMinute.signature_id.in_(ids)
                ),
                SignatureMinute,
            ).group_by(SignatureMinute.signature_id)
        ).all()
    )
    users = dict(
        session.execute(
            filtered(
                select(Event.signature_id, func.count(func.distinct(user_identity()))).where(
                    Event.signature_id.in_(ids)
                ),
                Event,
            ).group_by(Event.signature_id)
        ).all()
    )
    releases: dict[int, list[str]] = {i: [] for i in ids}
    for sig_id, rel in session.execute(
        select(SignatureMinute.signature_id, SignatureMinute.release)
        .where(SignatureMinute.signature_id.in_(ids))
        .distinct()
        .order_by(SignatureMinute.release)
    ):
        releases[sig_id].append(rel)
    return [
        {
            "id": sig.id,
            "title": sig.title,
            "type": sig.type,
            "value": sig.value,
            "culprit": sig.culprit,
            "noise_class": sig.noise_class,
            "first_seen": sig.first_seen,
            "last_seen": sig.last_seen,
            "first_release": sig.first_release,
            "events": int(events.get(sig.id) or 0),
            "users": int(users.get(sig.id, 0)),
            "releases": releases.get(sig.id, []),
        }
        for sig in signatures
    ]


def get_event(session: Session, *, project_id: int, event_id: str) -> dict[str, Any]:
    """The normalised event, as stored by the digest."""
    normalized_id = event_id.replace("-", "").lower()
    event = session.scalar(
        select(Event).where(Event.project_id == project_id, Event.event_id == normalized_id)
    )
    if event is None:
        raise NotFound(f"no event {event_id!r} in this project (it may still be waiting for digest)")
    data = dict(event.data)
    frames = data.get("frames") or []
    return {
        "event_id": event.event_id,
        "signature_id": event.signature_id,
        "release": event.release,
        "environment": event.environment,
        "timestamp": event.timestamp,
        "received_at": event.received_at,
        "level": data.get("level"),
        "platform": data.get("platform"),
        "message": data.get("message"),
        "user_key": event.user_key,
        "url": data.get("url"),
        "route": event.route,
        "browser": event.browser,
        "os": event.os,
        "tags": data.get("tags") or {},
        "exception": {
            "type": data.get("exception_type"),
            "value": data.get("exception_value"),
            "frames": [
                {
                    key: frame.get(key)
                    for key in (
                        "filename",
                        "abs_path",
                        "function",
                        "module",
                        "lineno",
                        "colno",
                        "in_app",
                        "context_line",
                        "pre_context",
                        "post_context",
                    )
                }
                for frame in frames
            ],
        },
    }


def signature_series(
    session: Session, *, signature_id: int, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Per-minute counts of one signature, by release and environment."""
    stmt = select(SignatureMinute).where(SignatureMinute.signature_id == signature_id)
    if since:
        stmt = stmt.where(SignatureMinute.minute >= since)
    if until:
        stmt = stmt.where(SignatureMinute.minute <= until)
    return [
        {
            "minute": row.minute,
            "release": row.release,
            "environment": row.environment,
            "events": row.events,
            "users": row.users,
            "sessions": row.sessions,
        }
        for row in session.scalars(stmt.order_by(SignatureMinute.minute, SignatureMinute.release))
    ]
