"""Claiming a digest batch: the oldest items, up to a number of items and a budget of payload bytes."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.intake.digest import digest_all, digest_batch
from detector.store import queue
from detector.store.db import transaction
from detector.store.models import Event, Project, RawItem


def enqueue_sized(factory: sessionmaker[Session], project: Project, sizes: list[int]) -> list[int]:
    """Events whose payloads are `sizes` bytes long (padded with a long message); their queue ids."""
    rows = []
    for n, size in enumerate(sizes):
        event_id = f"{n:032x}"
        head = b'{"event_id":"%s","message":"' % event_id.encode()
        tail = b'","timestamp":%d}' % int(datetime.now(UTC).timestamp())
        payload = head + b"x" * (size - len(head) - len(tail)) + tail
        assert len(payload) == size
        rows.append(
            {
                "project_id": project.id,
                "item_type": "event",
                "event_id": event_id,
                "received_at": datetime.now(UTC),
                "payload": payload,
            }
        )
    with transaction(factory) as session:
        queue.enqueue_items(session, rows)
    with factory() as session:
        return list(session.scalars(select(RawItem.id).order_by(RawItem.id)))


def test_a_claim_stops_at_its_byte_budget_and_takes_at_least_one_item(
    factory: sessionmaker[Session], project: Project
) -> None:
    ids = enqueue_sized(factory, project, [1000, 1000, 1000, 5000, 1000])
    with transaction(factory) as session:
        claim = queue.claim_batch(session, limit=10, max_bytes=2500)
        assert [item.id for item in claim.items] == ids[:2]
        assert claim.full  # cut by bytes: more is waiting
        assert all(len(item.payload) == 1000 for item in claim.items)
    with transaction(factory) as session:  # an item over the whole budget still goes, alone
        queue.finish_items(session, ids[:3])
    queue.delete_digested(factory)
    with transaction(factory) as session:
        claim = queue.claim_batch(session, limit=10, max_bytes=2500)
        assert [item.id for item in claim.items] == [ids[3]]
        assert claim.full
    with transaction(factory) as session:  # within both limits: everything left, not full
        claim = queue.claim_batch(session, limit=10, max_bytes=10_000)
        assert [item.id for item in claim.items] == ids[3:]
        assert not claim.full
    with transaction(factory) as session:  # the item limit
        claim = queue.claim_batch(session, limit=1)
        assert [item.id for item in claim.items] == [ids[3]]
        assert claim.full


def test_a_byte_budget_splits_the_digest_into_batches_and_counts_everything_once(
    factory: sessionmaker[Session], project: Project
) -> None:
    enqueue_sized(factory, project, [3000] * 10)
    first = digest_batch(factory, batch_size=100, max_bytes=10_000)
    assert (first.items, first.events, first.full) == (3, 3, True)
    rest = digest_all(factory, batch_size=100, max_bytes=10_000)
    assert (rest.items, rest.events) == (7, 7)
    with factory() as session:
        assert session.scalar(select(func.count(Event.id))) == 10
        assert session.scalar(select(func.count(RawItem.id))) == 0
