"""Dead letters: the intake items the digest failed on `queue.MAX_ATTEMPTS` times, kept rather than dropped.

An item's failure is recorded in the queue (`attempts`, `last_error`); at its last attempt it moves to
`dead_letters`, with its payload and error, in the same transaction that finishes it in the queue
(`queue.finish_items`), so it is in exactly one of the two. Replaying puts dead letters back in the
queue with fresh attempts (after a fix, or once a transient cause is gone).

Replay on PostgreSQL is one transaction. On SQLite the queue is a file of its own: the items are queued
first (one commit) and their dead letters deleted after (another), so a crash in between replays them
twice rather than never; events are stored once per event id whatever happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import bindparam, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from detector.store import queue
from detector.store.db import transaction
from detector.store.models import DeadLetter, RawItem
from detector.store.types import UTCDateTime

MAX_ERROR_CHARS = 2000

REPLAY_PIECE = 500
"""Dead letters replayed per transaction (their payloads are read into memory)."""


def record_failure(session: Session, item_id: int, error: str, *, now: datetime | None = None) -> bool:
    """Count one failed digest of the queued item `item_id`, with its error. At `queue.MAX_ATTEMPTS` the
    item moves to the dead letters (and is finished in the queue) in this transaction; returns whether
    it did. An item no longer queued (another worker digested it meanwhile) is left alone.

    The last failure is not counted in the queue: on SQLite that would be a write to the queue's file,
    committed apart from the dead letter in the main file, and a crash between the two would leave an
    item spent but in neither place. The move writes the main file only (the letter and the item's mark)."""
    error = error[:MAX_ERROR_CHARS]
    attempts = session.scalar(select(RawItem.attempts).where(RawItem.id == item_id).with_for_update())
    if attempts is None:
        return False
    if attempts + 1 < queue.MAX_ATTEMPTS:
        session.execute(update(RawItem).where(RawItem.id == item_id).values(attempts=attempts + 1, last_error=error))
        return False
    failed_at = bindparam("failed_at", now or datetime.now(UTC), type_=UTCDateTime)
    columns = ("raw_item_id", "project_id", "item_type", "event_id", "received_at", "payload")
    source = select(
        RawItem.id,
        RawItem.project_id,
        RawItem.item_type,
        RawItem.event_id,
        RawItem.received_at,
        RawItem.payload,
        literal(attempts + 1),
        literal(error),
        failed_at,
    ).where(RawItem.id == item_id)
    session.execute(insert(DeadLetter).from_select([*columns, "attempts", "error", "failed_at"], source))
    queue.finish_items(session, [item_id])
    return True


def count_dead_letters(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(DeadLetter)) or 0


class DeadLetterSummary(NamedTuple):
    id: int
    project_id: int
    item_type: str
    event_id: str | None
    raw_item_id: int
    received_at: datetime
    failed_at: datetime
    attempts: int
    payload_bytes: int
    error: str


def list_dead_letters(session: Session, *, limit: int = 100, project_id: int | None = None) -> list[DeadLetterSummary]:
    """The oldest dead letters first, without their payloads (their size instead)."""
    query = select(
        DeadLetter.id,
        DeadLetter.project_id,
        DeadLetter.item_type,
        DeadLetter.event_id,
        DeadLetter.raw_item_id,
        DeadLetter.received_at,
        DeadLetter.failed_at,
        DeadLetter.attempts,
        func.length(DeadLetter.payload),
        DeadLetter.error,
    ).order_by(DeadLetter.id)
    if project_id is not None:
        query = query.where(DeadLetter.project_id == project_id)
    return [DeadLetterSummary(*row) for row in session.execute(query.limit(limit)).all()]


def dead_letter_payload(session: Session, dead_letter_id: int) -> bytes | None:
    return session.scalar(select(DeadLetter.payload).where(DeadLetter.id == dead_letter_id))


def _selected(ids: Sequence[int] | None, after: int) -> object:
    condition = DeadLetter.id > after
    return condition if ids is None else condition & DeadLetter.id.in_(list(ids))


def replay_dead_letters(factory: sessionmaker[Session], *, ids: Sequence[int] | None = None) -> int:
    """Put the dead letters `ids` (None: all) back in the queue with no attempts counted, as they were
    received; returns how many. See the module's note on SQLite."""
    replayed = 0
    after = 0
    sqlite = factory.kw["bind"].dialect.name == "sqlite"
    while True:
        with transaction(factory) as session:
            query = select(DeadLetter).where(_selected(ids, after)).order_by(DeadLetter.id).limit(REPLAY_PIECE)
            if not sqlite:
                query = query.with_for_update(skip_locked=True)  # two replays at once take each letter once
            letters = session.scalars(query).all()
            if not letters:
                return replayed
            rows = [
                {
                    "project_id": letter.project_id,
                    "item_type": letter.item_type,
                    "event_id": letter.event_id,
                    "received_at": letter.received_at,
                    "payload": letter.payload,
                }
                for letter in letters
            ]
            taken = [letter.id for letter in letters]
            queue.enqueue_items(session, rows)
            if not sqlite:
                session.execute(delete(DeadLetter).where(DeadLetter.id.in_(taken)))
        if sqlite:  # after the queue's file committed the items: a crash between replays twice, never loses
            with transaction(factory) as session:
                session.execute(delete(DeadLetter).where(DeadLetter.id.in_(taken)))
        replayed += len(taken)
        after = taken[-1]


def drop_dead_letters(session: Session, *, ids: Sequence[int] | None = None) -> int:
    """Delete the dead letters `ids` (None: all) for good; returns how many."""
    query = delete(DeadLetter)
    if ids is not None:
        query = query.where(DeadLetter.id.in_(list(ids)))
    return session.execute(query).rowcount or 0
