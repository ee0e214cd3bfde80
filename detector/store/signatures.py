"""Read queries over signatures and events, shaped for the API and the notebook client."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from detector.errors import NotFound
from detector.store.models import Event, Signature, SignatureMinute, SignatureRelease, SignatureUser


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
    """Signatures seen in the filtered scope, by id, with their event and distinct-user totals and releases.

    Everything is read from the totals the digest keeps (`signatures`, `signature_releases`,
    `signature_users`), never from raw events, and only for the page: the cost follows the page, not
    the traffic. Without `since`, `events` and `users` cover the signature's whole history in the
    chosen release and environment; with `since`, the events and the distinct users from that minute on.
    """
    since_minute = since.replace(second=0, microsecond=0) if since else None

    def scoped(query: Any, model: Any) -> Any:
        if release:
            query = query.where(model.release == release)
        if environment:
            query = query.where(model.environment == environment)
        return query

    in_scope = scoped(
        select(SignatureRelease.signature_id).where(SignatureRelease.signature_id == Signature.id), SignatureRelease
    )
    if since_minute:
        in_scope = in_scope.where(SignatureRelease.last_seen >= since_minute)
    stmt = (
        select(Signature)
        .where(Signature.project_id == project_id, in_scope.exists())
        .order_by(Signature.id)
        .limit(limit + 1)
    )
    if after_id is not None:
        stmt = stmt.where(Signature.id > after_id)
    signatures = list(session.scalars(stmt))
    ids = [sig.id for sig in signatures]
    if not ids:
        return []

    per_release = session.execute(
        scoped(
            select(
                SignatureRelease.signature_id,
                SignatureRelease.release,
                SignatureRelease.events,
                SignatureRelease.users,
                SignatureRelease.last_seen,
            ).where(SignatureRelease.signature_id.in_(ids)),
            SignatureRelease,
        )
    ).all()
    releases: dict[int, set[str]] = {i: set() for i in ids}
    events: dict[int, int] = dict.fromkeys(ids, 0)
    users: dict[int, int] = dict.fromkeys(ids, 0)
    keys: dict[int, int] = dict.fromkeys(ids, 0)
    for sig_id, rel, n_events, n_users, last_seen in per_release:
        if since_minute and last_seen < since_minute:
            continue
        releases[sig_id].add(rel)
        events[sig_id] += n_events
        users[sig_id] += n_users
        keys[sig_id] += 1

    if since_minute:
        # Events from the minute counts of the window; users from who was seen in it.
        events.update(
            session.execute(
                scoped(
                    select(SignatureMinute.signature_id, func.sum(SignatureMinute.events)).where(
                        SignatureMinute.signature_id.in_(ids), SignatureMinute.minute >= since_minute
                    ),
                    SignatureMinute,
                ).group_by(SignatureMinute.signature_id)
            ).all()
        )
    unscoped = not (release or environment or since_minute)
    if unscoped:
        users = {sig.id: sig.users for sig in signatures}
        events = {sig.id: sig.events for sig in signatures}
    else:
        # A user counted in two matching (release, environment) totals is one user: count distinct identities
        # for those signatures; a single matching total is already distinct.
        recount = [i for i in ids if keys[i] > 1 or (since_minute and keys[i])]
        if recount:
            query = scoped(
                select(SignatureUser.signature_id, func.count(func.distinct(SignatureUser.identity))).where(
                    SignatureUser.signature_id.in_(recount)
                ),
                SignatureUser,
            )
            if since_minute:
                query = query.where(SignatureUser.last_minute >= since_minute)
            users.update(session.execute(query.group_by(SignatureUser.signature_id)).all())
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
            "users": int(users.get(sig.id) or 0),
            "releases": sorted(releases[sig.id]),
        }
        for sig in signatures
    ]


def get_event(session: Session, *, project_id: int, event_id: str) -> dict[str, Any]:
    """The normalised event, as stored by the digest."""
    normalized_id = event_id.replace("-", "").lower()
    event = session.scalar(select(Event).where(Event.project_id == project_id, Event.event_id == normalized_id))
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
