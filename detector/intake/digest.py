"""The digest: raw intake items → normalised events with signatures, and per-minute counts.

Runs in batches inside one transaction per batch (see `detector.store.queue`), so it is safe to
kill at any point and to run in several workers at once.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from detector.intake.fingerprint import signature_for_event
from detector.intake.noise import noise_class
from detector.intake.normalize import InvalidEvent, NormalizedEvent, event_to_dict, normalize_event_json
from detector.intake.sessions import (
    InvalidSession,
    SessionAggregate,
    SessionUpdate,
    parse_session_aggregates,
    parse_session_update,
)
from detector.store import counts, dead_letters, queue
from detector.store.db import PlainJson, transaction
from detector.store.dialect import lock_project
from detector.store.queue import ClaimedItem

log = logging.getLogger(__name__)

Symbolicator = Callable[[Session, int, NormalizedEvent], NormalizedEvent]
"""Resolves minified frames of an event through the project's source maps (issue: deploys)."""


@dataclass
class DigestStats:
    items: int = 0
    events: int = 0
    duplicates: int = 0
    sessions: int = 0
    failed: int = 0
    dead_lettered: int = 0
    """Items moved to the dead letters at their last failed attempt (`store.dead_letters`)."""
    seconds: float = 0.0
    lag_seconds: float = 0.0
    full: bool = False
    """The claim stopped at its limit of items or bytes: more items may be waiting."""

    def add(self, other: DigestStats) -> None:
        """Add `other`'s counts and time to these; the larger lag of the two."""
        for name in ("items", "events", "duplicates", "sessions", "failed", "dead_lettered", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.lag_seconds = max(self.lag_seconds, other.lag_seconds)


_MINUTES: dict[tuple[int, ...], datetime] = {}


def floor_minute(ts: datetime) -> datetime:
    """``ts`` without seconds and microseconds. Remembered per minute: ``replace`` with keywords cost 3%
    of the digest's work before storage, once per event, and a batch's events share a few minutes."""
    # the tzinfo by identity (equal zones may be distinct objects); the cached value keeps it alive
    key = (ts.year, ts.month, ts.day, ts.hour, ts.minute, id(ts.tzinfo), ts.fold)
    minute = _MINUTES.get(key)
    if minute is None:
        if len(_MINUTES) >= 4096:
            _MINUTES.clear()
        minute = _MINUTES[key] = ts.replace(second=0, microsecond=0)
    return minute


def _event_row(
    project_id: int, event: NormalizedEvent, signature_id: int | None, received_at: datetime, *, encode: bool = False
) -> dict[str, object]:
    data = PlainJson(event_to_dict(event, shared_frames=True))  # encoded with orjson: the event has no floats
    if encode:
        data.encode()
    return {
        "project_id": project_id,
        "event_id": event.event_id,
        "signature_id": signature_id,
        "release": event.release[:250],
        "environment": event.environment[:64],
        "timestamp": event.timestamp,
        "minute": floor_minute(event.timestamp),
        "received_at": received_at,
        "user_key": (event.user_key or None) and event.user_key[:128],
        "session_key": (event.session_key or None) and event.session_key[:64],
        "route": (event.route or None) and event.route[:256],
        "browser": (event.browser or None) and event.browser[:64],
        "os": (event.os or None) and event.os[:64],
        "data": data,
    }


def _session_row(update: SessionUpdate) -> dict[str, object]:
    assert update.sid is not None
    return {
        "sid": update.sid[:64],
        "distinct_id": (update.did or None) and str(update.did)[:128],
        "release": update.release[:250],
        "environment": update.environment[:64],
        "started": update.started,
        "started_minute": floor_minute(update.started),
        "updated": update.timestamp,
        "status": update.status,
        "errors": update.errors,
        "errored": update.is_errored,
        "crashed": update.is_crashed,
        "segment": (update.segment or None) and update.segment[:64],
    }


def _aggregate_row(agg: SessionAggregate) -> dict[str, object]:
    return {
        "release": agg.release[:250],
        "environment": agg.environment[:64],
        "minute": floor_minute(agg.started),
        "started": agg.total,
        "errored": agg.errored + agg.abnormal + agg.crashed + agg.unhandled,
        "crashed": agg.crashed,
    }


_gc_pause_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (and back on after the last of concurrent blocks, if
    it was on before the first). A batch keeps thousands of containers alive (payload values, events,
    rows, returned rows) until it ends, and refcounting frees nearly all of them then: with the collector
    on, they set off collections that traverse them again and again and promote them towards the old
    generation, whose full collections traverse every object of the process. That was 22-28 us of CPU per
    event (bench.digest_cpu, 10,000 events: 318 young, 28 middle and 2 full collections, 0.15 s of them in
    the full ones); paused, a batch ends with one young collection of what it left alive. Cycles made in
    the block are collected later, as always."""
    global _gc_pauses, _gc_was_enabled
    with _gc_pause_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_pause_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def _digest_project(
    session: Session,
    project_id: int,
    items: list[ClaimedItem],
    symbolicate: Symbolicator | None,
    stats: DigestStats,
) -> list[int]:
    """Digest one project's items; returns the ids of items that could be digested (the rest are kept).
    The garbage collector is paused meanwhile (`_gc_paused`)."""
    with _gc_paused():
        return _digest_project_items(session, project_id, items, symbolicate, stats)


def _digest_project_items(
    session: Session,
    project_id: int,
    items: list[ClaimedItem],
    symbolicate: Symbolicator | None,
    stats: DigestStats,
) -> list[int]:
    done: list[int] = []
    events: dict[str, tuple[NormalizedEvent, datetime]] = {}
    session_updates: dict[str, SessionUpdate] = {}
    aggregates: list[SessionAggregate] = []
    for item in items:
        try:
            if item.item_type == "event":
                event = normalize_event_json(item.payload, received_at=item.received_at)
                if symbolicate is not None:
                    event = symbolicate(session, project_id, event)
                if event.event_id in events:
                    stats.duplicates += 1
                events[event.event_id] = (event, item.received_at)
            elif item.item_type == "session":
                update = parse_session_update(item.payload)
                if update.sid is None:  # an anonymous session can only be counted, not followed
                    aggregates.append(_anonymous_aggregate(update))
                else:
                    known = session_updates.get(update.sid)
                    session_updates[update.sid] = _merge_updates(known, update) if known else update
            elif item.item_type == "sessions":
                aggregates.extend(parse_session_aggregates(item.payload))
        except (InvalidEvent, InvalidSession, ValueError) as exc:
            log.warning("digest: item %s of project %s failed: %s", item.id, project_id, exc)
            if dead_letters.record_failure(session, item.id, f"{type(exc).__name__}: {exc}"):
                stats.dead_lettered += 1
            stats.failed += 1
            continue
        done.append(item.id)

    signature_rows: dict[str, dict[str, object]] = {}
    event_sig_hash: dict[str, str] = {}
    for event_id, (event, _received) in events.items():
        sig = signature_for_event(event)
        event_sig_hash[event_id] = sig.hash
        row = signature_rows.get(sig.hash)
        if row is None:
            signature_rows[sig.hash] = {
                "hash": sig.hash,
                "type": sig.type[:256],
                "value": sig.value,
                "culprit": sig.culprit[:512],
                "title": sig.title[:512],
                "noise_class": noise_class(event),
                "in_app": any(frame.in_app for frame in event.frames),
                "first_seen": event.timestamp,
                "last_seen": event.timestamp,
                "first_release": event.release[:250],
            }
        else:
            row["first_seen"] = min(row["first_seen"], event.timestamp)  # type: ignore[type-var]
            row["last_seen"] = max(row["last_seen"], event.timestamp)  # type: ignore[type-var]

    # The rows are built (and on SQLite their JSON encoded) before the first write of the batch: SQLite has
    # one writer, and intake's commits wait while the digest holds the write lock.
    encode = session.get_bind().dialect.name == "sqlite"
    event_rows = [_event_row(project_id, event, None, received, encode=encode) for event, received in events.values()]
    sig_ids = counts.upsert_signatures(session, project_id, list(signature_rows.values()))
    for row, event_id in zip(event_rows, events, strict=True):
        row["signature_id"] = sig_ids[event_sig_hash[event_id]]
    inserted = counts.insert_events(session, event_rows)
    stats.events += len(inserted)
    stats.duplicates += len(event_rows) - len(inserted)

    lock_project(session, project_id)
    counts.add_signature_minutes(session, project_id, inserted)
    counts.add_signature_rollups(session, project_id, inserted)
    session_keys = counts.upsert_session_states(
        session, project_id, [_session_row(u) for u in session_updates.values()]
    )
    session_keys += counts.add_session_aggregates(session, project_id, [_aggregate_row(a) for a in aggregates])
    counts.recompute_session_minutes(session, project_id, session_keys)
    stats.sessions += len(session_updates) + len(aggregates)
    return done


def _merge_updates(a: SessionUpdate, b: SessionUpdate) -> SessionUpdate:
    """Two updates of one session in one batch: later status, larger error count, earliest start."""
    later = b if b.timestamp >= a.timestamp else a
    return replace(
        later,
        errors=max(a.errors, b.errors),
        started=min(a.started, b.started),
        init=a.init or b.init,
        user_agent=later.user_agent or a.user_agent or b.user_agent,
    )


def _anonymous_aggregate(update: SessionUpdate) -> SessionAggregate:
    """A session without `sid` can be counted but not followed: fold it into the per-minute aggregates."""
    crashed = int(update.is_crashed)
    errored = int(update.is_errored and not crashed)
    return SessionAggregate(
        started=update.started,
        did=update.did,
        exited=1 - crashed - errored,
        errored=errored,
        abnormal=0,
        crashed=crashed,
        unhandled=0,
        release=update.release,
        environment=update.environment,
    )


def digest_batch(
    factory: sessionmaker[Session],
    *,
    batch_size: int = 500,
    max_bytes: int | None = None,
    symbolicate: Symbolicator | None = None,
    only_item: int | None = None,
) -> DigestStats:
    """Claim up to `batch_size` raw items (and up to `max_bytes` of payload, at least one item), digest them
    and finish them (`queue.finish_items`), in one transaction; then delete what it digested from the
    queue's file, where that is a separate step. With `only_item`, that item alone (if claimable)."""
    started = time.perf_counter()
    stats = DigestStats()
    with transaction(factory) as session:
        if only_item is not None:
            items, stats.full = queue.claim_item(session, only_item)
        else:
            items, stats.full = queue.claim_batch(session, limit=batch_size, max_bytes=max_bytes)
        if not items:
            # Items marked digested but not deleted from the queue's file: what a crash left.
            left_marks = queue.has_digested_marks(session)
        else:
            left_marks = False
            stats.items = len(items)
            stats.lag_seconds = (datetime.now(UTC) - min(i.received_at for i in items)).total_seconds()
            by_project: dict[int, list[ClaimedItem]] = defaultdict(list)
            for item in items:
                by_project[item.project_id].append(item)
            done: list[int] = []
            for project_id in sorted(by_project):
                done += _digest_project(session, project_id, by_project[project_id], symbolicate, stats)
            queue.finish_items(session, done)
    if items or left_marks:
        queue.delete_digested(factory, spent_marks=left_marks)
    if items:
        stats.seconds = time.perf_counter() - started
    return stats


def digest_all(
    factory: sessionmaker[Session],
    *,
    batch_size: int = 500,
    max_bytes: int | None = None,
    symbolicate: Symbolicator | None = None,
) -> DigestStats:
    """Digest until the queue is empty (used by tests, the demo and `detector worker --once`)."""
    total = DigestStats()
    while True:
        stats = digest_batch(factory, batch_size=batch_size, max_bytes=max_bytes, symbolicate=symbolicate)
        if stats.items == 0:
            return total
        total.add(stats)
        if stats.failed == stats.items:
            return total
