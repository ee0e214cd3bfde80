"""The raw queue's own SQLite file: intake never waits for the main file's write lock, and a crash
between the digest's commit and the deletion of its items neither loses nor repeats an item.

PostgreSQL keeps the queue in its database and deletes items in the digest's transaction; the crash
tests run there too and hold the same counts.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.intake.digest import digest_all, digest_batch
from detector.store import queue
from detector.store.db import (
    QUEUE_SCHEMA,
    WalCheckpointer,
    alembic_config,
    make_engine,
    queue_database_path,
    transaction,
    upgrade,
)
from detector.store.models import Event, Project, QueueDigested, RawItem, SessionMinute, SignatureMinute
from tests.e2e.test_workers_crash import fill_queue


def totals(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        return {
            "queued": session.scalar(select(func.count(RawItem.id))) or 0,
            "claimable": queue.queue_depth(session),
            "marks": session.scalar(select(func.count(QueueDigested.id))) or 0,
            "events": session.scalar(select(func.count(Event.id))) or 0,
            "counted": session.scalar(select(func.coalesce(func.sum(SignatureMinute.events), 0))) or 0,
            "sessions": session.scalar(select(func.coalesce(func.sum(SessionMinute.started), 0))) or 0,
        }


def queued(factory: sessionmaker[Session], project: Project, events: int) -> int:
    deployed = (datetime.now(UTC) - timedelta(minutes=6)).replace(second=0, microsecond=0)
    return len(fill_queue(factory, project.id, deployed, events=events, minutes=3, sessions_per_minute=100))


def sqlite_path(database_url: str) -> str:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only: PostgreSQL keeps the raw queue in its own database")
    return database_url.split(":///", 1)[1]


def test_queue_file_sits_beside_the_database() -> None:
    assert queue_database_path("/data/detector.db") == "/data/detector.queue.db"
    assert queue_database_path("/data/detector") == "/data/detector.queue"
    assert queue_database_path(":memory:") == ":memory:"
    assert queue_database_path("") == ":memory:"


def test_intake_commits_while_another_writer_holds_the_main_file(
    database_url: str, factory: sessionmaker[Session], project: Project
) -> None:
    path = sqlite_path(database_url)
    holder = sqlite3.connect(path, timeout=0)
    holder.execute("BEGIN IMMEDIATE")  # the main file's write lock, as the digest holds it for a batch
    try:
        engine = factory.kw["bind"]
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA busy_timeout=0")  # wait for no lock: fail at once instead
            connection.commit()
            with connection.begin():
                queue.enqueue_items(
                    connection,
                    [
                        {
                            "project_id": project.id,
                            "item_type": "event",
                            "event_id": "a" * 32,
                            "received_at": datetime.now(UTC),
                            "payload": b"{}",
                        }
                    ],
                )
            connection.exec_driver_sql("PRAGMA busy_timeout=30000")
    finally:
        holder.rollback()
        holder.close()
    on_disk = sqlite3.connect(queue_database_path(path))
    try:
        assert on_disk.execute("SELECT event_id FROM raw_items").fetchall() == [("a" * 32,)]
    finally:
        on_disk.close()
    main = sqlite3.connect(path)
    try:
        assert main.execute("SELECT name FROM sqlite_master WHERE name = 'raw_items'").fetchall() == []
    finally:
        main.close()


def test_a_crash_after_the_digest_commits_neither_loses_nor_repeats_items(
    factory: sessionmaker[Session], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = queued(factory, project, 300)
    real_delete = queue.delete_digested

    def crash(_factory: sessionmaker[Session], **_: bool) -> None:
        raise SystemExit("killed between the digest's commit and the deletion of its items")

    monkeypatch.setattr(queue, "delete_digested", crash)
    with pytest.raises(SystemExit):
        digest_batch(factory, batch_size=10_000)
    after_crash = totals(factory)
    assert after_crash["events"] == after_crash["counted"] == events
    assert after_crash["sessions"] == 300
    assert after_crash["claimable"] == 0  # marked items are never claimed again
    if factory.kw["bind"].dialect.name == "sqlite":
        assert after_crash["queued"] == after_crash["marks"] == events + 3

    monkeypatch.setattr(queue, "delete_digested", real_delete)
    assert digest_all(factory).items == 0  # the next pass claims nothing, and deletes what was left
    assert totals(factory) == {**after_crash, "queued": 0, "marks": 0}


def test_marks_are_kept_no_longer_than_the_next_batch(factory: sessionmaker[Session], project: Project) -> None:
    events = queued(factory, project, 100)
    digest_batch(factory, batch_size=50)
    first = totals(factory)
    if factory.kw["bind"].dialect.name == "sqlite":
        assert first["marks"] == 50  # deleted from the queue's file, marks left for the next batch
    assert first["queued"] == events + 3 - 50
    digest_batch(factory, batch_size=50)
    with factory() as session:
        marked = set(session.scalars(select(QueueDigested.id)))
        left = set(session.scalars(select(RawItem.id)))
    assert len(marked) == (50 if factory.kw["bind"].dialect.name == "sqlite" else 0)
    assert not marked & left  # only this batch's marks, whose items are gone
    digest_all(factory)
    assert totals(factory)["marks"] == 0 and totals(factory)["counted"] == events


def test_a_large_batch_leaves_the_queue_file_in_pieces(
    database_url: str, factory: sessionmaker[Session], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each piece is a transaction of its own, so intake's commits can go in between."""
    sqlite_path(database_url)
    monkeypatch.setattr(queue, "DELETE_PIECE_ITEMS", 40)
    queued(factory, project, 147)  # and 3 session items: 150 in all
    engine = factory.kw["bind"]
    seen_before_commits: list[int] = []

    def before_commit(_connection: object) -> None:  # what another connection sees: the earlier commits
        other = engine.raw_connection()
        try:
            seen_before_commits.append(other.cursor().execute("SELECT count(*) FROM raw_items").fetchone()[0])
        finally:
            other.close()

    with transaction(factory) as session:  # what a digest's transaction marks
        queue.finish_items(session, list(session.scalars(select(RawItem.id))))
    sa_event.listen(engine, "commit", before_commit)
    try:
        queue.delete_digested(factory)
    finally:
        sa_event.remove(engine, "commit", before_commit)
    assert seen_before_commits == [150, 110, 70, 30]
    assert totals(factory)["queued"] == 0

    more = queued(factory, project, 99)  # a whole digest, deleted in pieces of 40
    digest_batch(factory, batch_size=10_000)
    left = totals(factory)
    assert (left["queued"], left["claimable"], left["marks"], left["events"], left["counted"]) == (
        0,
        0,
        102,
        more,
        more,
    )


def test_pieces_delete_only_marked_items_when_unmarked_ones_lie_between(
    database_url: str, factory: sessionmaker[Session], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_path(database_url)
    monkeypatch.setattr(queue, "DELETE_PIECE_ITEMS", 3)
    queued(factory, project, 21)  # and 3 session items
    with factory() as session:
        ids = list(session.scalars(select(RawItem.id).order_by(RawItem.id)))
    kept = {ids[1], ids[4], ids[5], ids[11]}  # e.g. items that failed: not marked, inside the pieces' ranges
    with transaction(factory) as session:
        queue.finish_items(session, [i for i in ids if i not in kept])
    queue.delete_digested(factory)
    with factory() as session:
        assert set(session.scalars(select(RawItem.id))) == kept


def test_a_crash_between_the_two_deletions_leaves_marks_that_are_cleared(
    database_url: str, factory: sessionmaker[Session], project: Project
) -> None:
    sqlite_path(database_url)
    events = queued(factory, project, 60)
    with transaction(factory) as session:  # what the digest's transaction marks, as if digested
        ids = list(session.scalars(select(RawItem.id)))
        queue.finish_items(session, ids)
    with factory.kw["bind"].begin() as connection:  # the first deletion only, then the "crash"
        connection.exec_driver_sql(f"DELETE FROM {QUEUE_SCHEMA}.raw_items")
    assert totals(factory)["marks"] == events + 3
    queued(factory, project, 30)  # new items: their ids follow the deleted ones, never reuse them
    with factory() as session:
        assert min(session.scalars(select(RawItem.id))) > max(ids)
    digest_all(factory)
    left = totals(factory)
    assert (left["queued"], left["marks"], left["events"], left["counted"]) == (0, 0, 30, 30)


def test_the_migration_moves_queued_items_to_the_queue_file_and_back(
    database_url: str, factory: sessionmaker[Session], project: Project
) -> None:
    path = sqlite_path(database_url)
    events = queued(factory, project, 40)
    with factory() as session:
        before = list(session.execute(select(RawItem.event_id, RawItem.payload).order_by(RawItem.id)))
    factory.kw["bind"].dispose()
    command.downgrade(alembic_config(database_url), "0003")
    main = sqlite3.connect(path)
    try:
        in_main = main.execute("SELECT event_id, payload FROM raw_items ORDER BY id").fetchall()
    finally:
        main.close()
    assert in_main == [tuple(row) for row in before] and len(in_main) == events + 3
    upgrade(database_url)
    with factory() as session:
        after = list(session.execute(select(RawItem.event_id, RawItem.payload).order_by(RawItem.id)))
    assert after == before
    assert Path(queue_database_path(path)).exists()
    digest_all(factory)
    assert totals(factory)["counted"] == events


def test_the_worker_checkpointer_keeps_the_wal_files_short(
    database_url: str, factory: sessionmaker[Session], project: Project
) -> None:
    """Without it, a WAL grows to `WAL_AUTOCHECKPOINT_PAGES` (40 MB) before a commit checkpoints it; with
    it, SQLite keeps reusing the WAL from its start."""
    path = sqlite_path(database_url)
    engine = factory.kw["bind"]

    def write_ten_megabytes() -> None:
        for n in range(10):
            rows = [
                {
                    "project_id": project.id,
                    "item_type": "event",
                    "event_id": f"{n:04d}{i:028d}",
                    "received_at": datetime.now(UTC),
                    "payload": bytes(2000),
                }
                for i in range(500)
            ]
            with engine.begin() as connection:
                queue.enqueue_items(connection, rows)
            time.sleep(0.05)

    wal = Path(queue_database_path(path) + "-wal")
    write_ten_megabytes()
    assert wal.stat().st_size > 8_000_000  # no checkpoint yet: every commit appended
    with engine.connect() as connection:  # start from an empty WAL
        connection.exec_driver_sql("PRAGMA queue.wal_checkpoint(TRUNCATE)")
    checkpointer = WalCheckpointer(engine, interval=0.01)
    checkpointer.start()
    try:
        write_ten_megabytes()
    finally:
        checkpointer.stop()
    assert wal.stat().st_size < 4_000_000
    with factory() as session:
        assert session.scalar(select(func.count(RawItem.id))) == 10_000  # nothing lost on the way


def test_a_url_with_options_puts_the_queue_beside_the_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'detector.db'}?timeout=10")
    try:
        with engine.connect() as connection:
            files = {name: file for _, name, file in connection.exec_driver_sql("PRAGMA database_list")}
    finally:
        engine.dispose()
    data = tmp_path / "data"
    assert files == {"main": str(data / "detector.db"), "queue": str(data / "detector.queue.db")}
