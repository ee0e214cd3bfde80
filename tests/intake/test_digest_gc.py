"""The digest pauses the cyclic garbage collector while it digests a project's items, and leaves it as it
found it: on when it was on, off when it was off, also when the digest fails or runs in several threads."""

from __future__ import annotations

import gc
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.intake import digest as digest_module
from detector.intake.digest import digest_all
from detector.intake.normalize import NormalizedEvent
from detector.store.db import transaction
from detector.store.models import Event, Project
from detector.store.queue import enqueue_items


@pytest.fixture
def gc_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def _queue(factory: sessionmaker[Session], project: Project, n: int) -> None:
    rows = []
    for i in range(n):
        event_id = uuid.uuid4().hex
        payload = {"event_id": event_id, "exception": {"values": [{"type": "TypeError", "value": f"bad {i}"}]}}
        rows.append(
            {
                "project_id": project.id,
                "item_type": "event",
                "event_id": event_id,
                "received_at": datetime.now(UTC),
                "payload": json.dumps(payload).encode(),
            }
        )
    with transaction(factory) as session:
        enqueue_items(session, rows)


def test_the_collector_is_off_while_a_batch_is_digested_and_on_again_after(
    factory: sessionmaker[Session], project: Project, gc_enabled: None
) -> None:
    _queue(factory, project, 5)
    seen: list[bool] = []

    def symbolicate(_session: Session, _project_id: int, event: NormalizedEvent) -> NormalizedEvent:
        seen.append(gc.isenabled())
        return event

    stats = digest_all(factory, batch_size=2, symbolicate=symbolicate)
    assert stats.events == 5
    assert seen == [False] * 5
    assert gc.isenabled()
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 5


def test_a_collector_that_was_off_stays_off(factory: sessionmaker[Session], project: Project, gc_enabled: None) -> None:
    _queue(factory, project, 3)
    gc.disable()
    digest_all(factory, batch_size=2)
    assert not gc.isenabled()


def test_the_collector_is_on_again_after_a_failing_digest(
    factory: sessionmaker[Session], project: Project, gc_enabled: None
) -> None:
    _queue(factory, project, 2)

    def failing(_session: Session, _project_id: int, _event: NormalizedEvent) -> NormalizedEvent:
        raise RuntimeError("symbolicator down")

    with pytest.raises(RuntimeError):
        digest_all(factory, symbolicate=failing)
    assert gc.isenabled()


def test_overlapping_pauses_in_threads_turn_the_collector_on_once_the_last_ends(gc_enabled: None) -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    during: list[bool] = []

    def first() -> None:
        with digest_module._gc_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with digest_module._gc_paused():
            second_in.set()
            first_out.wait(5)
            during.append(gc.isenabled())  # the first pause has ended, this one has not

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert during == [False]
    assert gc.isenabled()
