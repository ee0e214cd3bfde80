"""Read queries over signatures and events, shaped for the API and the notebook client."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from detector.errors import NotFound
from detector.store.counts import floor_hour
from detector.store.models import (
    Event,
    Signature,
    SignatureEnvironment,
    SignatureHour,
    SignatureMinute,
    SignatureRelease,
    SignatureReleaseUser,
    SignatureUser,
    SignatureUserHour,
)


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

    filtered = bool(release or environment)
    stmt = select(Signature).where(Signature.project_id == project_id).order_by(Signature.id).limit(limit + 1)
    if filtered:
        in_scope = scoped(
            select(SignatureRelease.signature_id).where(SignatureRelease.signature_id == Signature.id),
            SignatureRelease,
        )
        if since_minute:
            in_scope = in_scope.where(SignatureRelease.last_seen >= since_minute)
        stmt = stmt.where(in_scope.exists())
    elif since_minute:
        stmt = stmt.where(Signature.last_seen >= since_minute)
    if after_id is not None:
        stmt = stmt.where(Signature.id > after_id)
    signatures = list(session.scalars(stmt))
    ids = [sig.id for sig in signatures]
    if not ids:
        return []

    in_ids = scoped(select().where(SignatureRelease.signature_id.in_(ids)), SignatureRelease)
    if since_minute:
        in_ids = in_ids.where(SignatureRelease.last_seen >= since_minute)
    releases: dict[int, list[str]] = {i: [] for i in ids}
    for sig_id, rel in session.execute(
        in_ids.add_columns(SignatureRelease.signature_id, SignatureRelease.release)
        .distinct()
        .order_by(SignatureRelease.signature_id, SignatureRelease.release)
    ):
        releases[sig_id].append(rel)
    # Whole history, all releases: the signature's own totals; any scope is counted below.
    scoped_out = filtered or since_minute
    events: dict[int, int] = {sig.id: 0 if scoped_out else sig.events for sig in signatures}
    users: dict[int, int] = {sig.id: 0 if scoped_out else sig.users for sig in signatures}
    keys: dict[int, int] = {}
    if environment and not release and not since_minute:
        for sig_id, n_events, n_users in session.execute(
            select(SignatureEnvironment.signature_id, SignatureEnvironment.events, SignatureEnvironment.users).where(
                SignatureEnvironment.signature_id.in_(ids), SignatureEnvironment.environment == environment
            )
        ):
            keys[sig_id], events[sig_id], users[sig_id] = 1, n_events, n_users
    elif filtered and not since_minute:
        for sig_id, n_keys, n_events, n_users in session.execute(
            in_ids.add_columns(
                SignatureRelease.signature_id,
                func.count(),
                func.sum(SignatureRelease.events),
                func.sum(SignatureRelease.users),
            ).group_by(SignatureRelease.signature_id)
        ):
            keys[sig_id], events[sig_id], users[sig_id] = n_keys, n_events, n_users

    if since_minute:
        # Whole hours from the hourly totals, and the minutes of the window's first, partial hour.
        whole_from = floor_hour(since_minute)
        if whole_from < since_minute:
            whole_from += timedelta(hours=1)
        partial_events = scoped(
            select(SignatureMinute.signature_id, func.sum(SignatureMinute.events)).where(
                SignatureMinute.signature_id.in_(ids),
                SignatureMinute.minute >= since_minute,
                SignatureMinute.minute < whole_from,
            ),
            SignatureMinute,
        ).group_by(SignatureMinute.signature_id)
        whole_events = scoped(
            select(SignatureHour.signature_id, func.sum(SignatureHour.events)).where(
                SignatureHour.signature_id.in_(ids), SignatureHour.hour >= whole_from
            ),
            SignatureHour,
        ).group_by(SignatureHour.signature_id)
        for query in (partial_events, whole_events):
            for sig_id, n in session.execute(query):
                events[sig_id] += int(n or 0)
        if filtered:
            users.update(_distinct_release_users(session, ids, scoped, since_minute))
        else:
            # Users last seen since: the histogram's whole hours, and the first hour's rows one by one.
            partial_users = (
                select(SignatureUser.signature_id, func.count())
                .where(
                    SignatureUser.signature_id.in_(ids),
                    SignatureUser.last_minute >= since_minute,
                    SignatureUser.last_minute < whole_from,
                )
                .group_by(SignatureUser.signature_id)
            )
            whole_users = (
                select(SignatureUserHour.signature_id, func.sum(SignatureUserHour.users))
                .where(SignatureUserHour.signature_id.in_(ids), SignatureUserHour.hour >= whole_from)
                .group_by(SignatureUserHour.signature_id)
            )
            for query in (partial_users, whole_users):
                for sig_id, n in session.execute(query):
                    users[sig_id] += int(n or 0)
    elif filtered:
        # One matching (release, environment) total is distinct already; a user in two is one user.
        recount = [i for i in ids if keys.get(i, 0) > 1]
        if recount:
            users.update(_distinct_release_users(session, recount, scoped, None))
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
            "releases": releases[sig.id],
        }
        for sig in signatures
    ]


def _distinct_release_users(
    session: Session, ids: list[int], scoped: Any, since_minute: datetime | None
) -> list[tuple[int, int]]:
    """Distinct users of each signature over its (release, environment) rows in scope."""
    query = scoped(
        select(SignatureReleaseUser.signature_id, func.count(func.distinct(SignatureReleaseUser.identity))).where(
            SignatureReleaseUser.signature_id.in_(ids)
        ),
        SignatureReleaseUser,
    )
    if since_minute:
        query = query.where(SignatureReleaseUser.last_minute >= since_minute)
    return [(sig, n) for sig, n in session.execute(query.group_by(SignatureReleaseUser.signature_id))]


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
    session: Session,
    *,
    signature_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    environment: str | None = None,
) -> list[dict[str, Any]]:
    """Per-minute counts of one signature, by release and environment (or in one environment)."""
    m = SignatureMinute
    stmt = select(m.minute, m.release, m.environment, m.events, m.users, m.sessions).where(
        m.signature_id == signature_id
    )
    if since:
        stmt = stmt.where(m.minute >= since)
    if until:
        stmt = stmt.where(m.minute <= until)
    if environment:
        stmt = stmt.where(m.environment == environment)
    # Plain rows, not ORM objects: a busy signature has thousands of minutes in a day.
    return [
        {"minute": minute, "release": rel, "environment": env, "events": n, "users": users, "sessions": sessions}
        for minute, rel, env, n, users, sessions in session.execute(stmt.order_by(m.minute, m.release))
    ]
