"""The durable intake queue: raw items stored by the API, claimed and finished by the digest.

A batch is claimed, digested and finished inside one transaction, so a worker that dies mid-batch
loses nothing (its transaction rolls back and the rows are claimable again) and repeats nothing.

- PostgreSQL: finishing deletes the items; concurrent workers skip each other's rows with
  `FOR UPDATE SKIP LOCKED`.
- SQLite: the queue is a file of its own (`db.queue_database_path`), so intake's commits do not wait
  for the digest's write lock on the main file. A transaction that writes both files is committed file by
  file, so finishing only marks the items in the main file (`QueueDigested`, with the digest's rows); once
  that has committed, `delete_digested` deletes them from the queue's file, and a later transaction the
  marks. Marked items are never claimed again, so a crash at any point neither loses nor repeats an item.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from detector.store.db import QUEUE_SCHEMA, tune_digest_connection
from detector.store.models import QueueDigested, RawItem
from detector.store.types import sqlite_utc_text, utc_reader

MAX_ATTEMPTS = 5


_RAW_ITEMS = RawItem.__table__


_ENQUEUE_UNNEST = (
    "INSERT INTO raw_items (project_id, item_type, event_id, received_at, payload, attempts) "
    "SELECT *, 0 FROM unnest(%b::int[], %b::text[], %b::text[], %b::timestamp[], %b::bytea[])"
)


_ENQUEUE_SQLITE = (
    "INSERT INTO raw_items (project_id, item_type, event_id, received_at, payload, attempts) VALUES (?, ?, ?, ?, ?, 0)"
)


def enqueue_items(session: Session | Connection, rows: Sequence[dict[str, object]]) -> None:
    """Insert raw items: each row has project_id, item_type, event_id, received_at, payload.

    Takes a session or a bare connection (intake's group commit uses `engine.begin()`: an ORM session
    per commit cost ~250 us against ~100 us)."""
    if not rows:
        return
    connection = session.connection() if isinstance(session, Session) else session
    if connection.dialect.name == "postgresql":
        # One array per column in binary: psycopg re-parses a multi-row VALUES of thousands of
        # parameters on every execution (it caches only small statements).
        received = [row["received_at"] for row in rows]
        connection.exec_driver_sql(
            _ENQUEUE_UNNEST,
            (
                [row["project_id"] for row in rows],
                [row["item_type"] for row in rows],
                [row["event_id"] for row in rows],
                [value.astimezone(UTC).replace(tzinfo=None) for value in received],  # type: ignore[attr-defined]
                [row["payload"] for row in rows],
            ),
        )
        return
    if connection.dialect.name == "sqlite":
        # The driver's executemany of tuples: SQLAlchemy's executemany builds and processes a parameter
        # dict per row, which was a fifth of the intake commit's time. `sqlite_utc_text` is the text the
        # column's bind processors produce, at half their cost.
        to_db = sqlite_utc_text
        connection.exec_driver_sql(
            _ENQUEUE_SQLITE,
            [
                (row["project_id"], row["item_type"], row["event_id"], to_db(row["received_at"]), row["payload"])
                for row in rows
            ],
        )
        return
    connection.execute(insert(_RAW_ITEMS).values(attempts=0), list(rows))


class ClaimedItem(NamedTuple):
    """A raw item as the digest reads it (plain values, not an ORM object: batches are large)."""

    id: int
    project_id: int
    item_type: str
    received_at: datetime
    payload: bytes


# PostgreSQL: the rows are locked here, before the byte budget cuts them. Rows past the budget (a run of
# large events) stay locked until the batch commits, and other workers skip them meanwhile: a later batch
# takes them. Locking only the rows taken, in the second query, would let a second worker find the first
# one's rows locked and claim nothing at all.
_CLAIMABLE_SIZES_SQL = (
    "SELECT id, octet_length(payload) FROM raw_items WHERE attempts < %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
)
_CLAIM_IDS_SQL = f"SELECT {', '.join(ClaimedItem._fields)} FROM raw_items WHERE id = ANY(%s) ORDER BY id"

# length() of a blob reads its size from the record's header, not its pages (though an `attempts` of 2
# or more, stored after the payload, is read from the end of the payload's pages, as it always was).
_CLAIMABLE_SIZES_SQLITE = (
    "SELECT r.id, length(r.payload) FROM raw_items r WHERE r.attempts < ? "
    "AND NOT EXISTS (SELECT 1 FROM main.queue_digested d WHERE d.id = r.id) ORDER BY r.id LIMIT ?"
)
# The items `_CLAIMABLE_SIZES_SQLITE` found, by their id range. The two reads are not one snapshot (pysqlite
# begins a transaction at the first write), but the range cannot gain an item: intake's new items take ids
# above every committed one (AUTOINCREMENT, one writer at a time), and only the digest marks, deletes or
# fails items. `claim_batch` keeps only the ids found, all the same.
_CLAIM_RANGE_SQLITE = (
    f"SELECT r.{', r.'.join(ClaimedItem._fields)} FROM raw_items r WHERE r.id BETWEEN ? AND ? AND r.attempts < ? "
    "AND NOT EXISTS (SELECT 1 FROM main.queue_digested d WHERE d.id = r.id) ORDER BY r.id"
)


class Claim(NamedTuple):
    items: list[ClaimedItem]
    full: bool
    """Whether the claim stopped at its limit of items or bytes (more may be waiting)."""


def claim_batch(session: Session, *, limit: int, max_bytes: int | None = None) -> Claim:
    """The oldest unclaimed items, locked for this transaction (skipping rows other workers hold): up to
    `limit` of them, and no more than `max_bytes` of payload (always at least one item), so that a run of
    large events cannot make a batch that does not fit in memory.

    The sizes are read first, then the payloads of the items within the budget. Plain SQL through the
    driver, `received_at` read as `UTCDateTime` reads it (memoised: items of one intake commit share it):
    SQLAlchemy's result processing of 500 rows was most of the claim's time."""
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "sqlite":
        if not connection.info.get("digest_connection"):
            tune_digest_connection(connection)
    elif dialect.name != "postgresql":
        raise NotImplementedError(f"the raw queue supports SQLite and PostgreSQL, not {dialect.name}")
    sqlite = dialect.name == "sqlite"
    sizes = connection.exec_driver_sql(
        _CLAIMABLE_SIZES_SQLITE if sqlite else _CLAIMABLE_SIZES_SQL, (MAX_ATTEMPTS, limit)
    ).all()
    taken = len(sizes)
    if max_bytes is not None:
        total = 0
        for index, (_item_id, size) in enumerate(sizes):
            total += size or 0
            if total > max_bytes and index > 0:
                taken = index
                break
    if not taken:
        return Claim([], False)
    if sqlite:
        rows = connection.exec_driver_sql(_CLAIM_RANGE_SQLITE, (sizes[0][0], sizes[taken - 1][0], MAX_ATTEMPTS))
    else:
        rows = connection.exec_driver_sql(_CLAIM_IDS_SQL, ([item_id for item_id, _size in sizes[:taken]],))
    read_time = utc_reader(dialect)
    found = {item_id for item_id, _size in sizes[:taken]}
    items = [
        ClaimedItem(item_id, project_id, item_type, read_time(received_at), payload)
        for item_id, project_id, item_type, received_at, payload in rows
        if item_id in found
    ]
    return Claim(items, taken < len(sizes) or len(sizes) == limit)


_CLAIM_ONE_SQL = (
    f"SELECT {', '.join(ClaimedItem._fields)} FROM raw_items WHERE id = %s AND attempts < %s FOR UPDATE SKIP LOCKED"
)
_CLAIM_ONE_SQLITE = (
    f"SELECT r.{', r.'.join(ClaimedItem._fields)} FROM raw_items r WHERE r.id = ? AND r.attempts < ? "
    "AND NOT EXISTS (SELECT 1 FROM main.queue_digested d WHERE d.id = r.id)"
)


def claim_item(session: Session, item_id: int) -> Claim:
    """The item `item_id` alone, as `claim_batch` would claim it (nothing if another worker holds it, or it
    is digested or spent): the worker digests a refused batch item by item with it."""
    connection = session.connection()
    sqlite = connection.dialect.name == "sqlite"
    rows = connection.exec_driver_sql(_CLAIM_ONE_SQLITE if sqlite else _CLAIM_ONE_SQL, (item_id, MAX_ATTEMPTS))
    read_time = utc_reader(connection.dialect)
    items = [ClaimedItem(i, p, t, read_time(r), payload) for i, p, t, r, payload in rows]
    return Claim(items, False)


def finish_items(session: Session, ids: Sequence[int]) -> None:
    """The digested items, in the digest's transaction: deleted (PostgreSQL), or marked digested (SQLite,
    deleted by `delete_digested` once this transaction has committed). Statements of a fixed text, which
    the driver keeps prepared (SQLAlchemy rendered an IN list of a new length, which SQLite prepared anew,
    every batch)."""
    if not ids:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("DELETE FROM raw_items WHERE id = ANY(%s)", (list(ids),))
        return
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    if connection.dialect.name == "sqlite":
        # The earlier batches' marks whose items are gone go in this transaction rather than in one of their
        # own: one commit less per batch. Safe whatever happens next, as a deleted item is never claimed.
        connection.exec_driver_sql(_DELETE_SPENT_MARKS)
        connection.exec_driver_sql(f"INSERT INTO main.queue_digested (id) VALUES ({mark})", [(i,) for i in ids])
        return
    connection.exec_driver_sql(f"DELETE FROM raw_items WHERE id = {mark}", [(item_id,) for item_id in ids])


DELETE_PIECE_ITEMS = 1000
"""SQLite: the most digested items `delete_digested` deletes from the queue's file in one transaction."""

_DELETE_MARKED_RANGE = (
    f"DELETE FROM {QUEUE_SCHEMA}.raw_items WHERE id IN (SELECT id FROM main.queue_digested WHERE id BETWEEN ? AND ?)"
)
_DELETE_SPENT_MARKS = f"DELETE FROM main.queue_digested WHERE id NOT IN (SELECT id FROM {QUEUE_SCHEMA}.raw_items)"


def delete_digested(factory: sessionmaker[Session], *, spent_marks: bool = False) -> None:
    """SQLite: delete the items marked digested from the queue's file; with `spent_marks`, then the marks of
    items no longer there (otherwise the next batch's `finish_items` does). Two transactions in that order,
    each writing one file. Run after each digest transaction commits, and (with `spent_marks`) when a claim
    finds nothing but marks, which finishes what a crash left. Does nothing elsewhere."""
    engine = factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        marked = connection.exec_driver_sql("SELECT id FROM main.queue_digested ORDER BY id").scalars().all()
    # In pieces, each a transaction of its own: intake's commits wait for the queue file's write lock while
    # a piece deletes, so a large batch's items (and their payloads' pages) are not deleted in one go.
    for start in range(0, len(marked), DELETE_PIECE_ITEMS):
        piece = marked[start : start + DELETE_PIECE_ITEMS]
        with engine.begin() as connection:
            connection.exec_driver_sql(_DELETE_MARKED_RANGE, (piece[0], piece[-1]))
    if spent_marks:
        with engine.begin() as connection:
            connection.exec_driver_sql(_DELETE_SPENT_MARKS)


def has_digested_marks(session: Session) -> bool:
    """Whether items marked digested wait for `delete_digested` (always False on PostgreSQL)."""
    return session.scalar(select(QueueDigested.id).limit(1)) is not None


def claimable() -> ColumnElement[bool]:
    """The condition on `RawItem` of items a digest may still claim: under MAX_ATTEMPTS and not digested
    (an item reaching MAX_ATTEMPTS moves to the dead letters, `store.dead_letters`)."""
    return (RawItem.attempts < MAX_ATTEMPTS) & RawItem.id.not_in(select(QueueDigested.id))


def queue_depth(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(RawItem).where(claimable())) or 0


def oldest_received(session: Session) -> datetime | None:
    return session.scalar(select(func.min(RawItem.received_at)).where(claimable()))


class QueueExtent(NamedTuple):
    items: int
    payload_bytes: int


_EXTENT_SAMPLE = 256
"""Payload sizes sampled from the newest items to estimate the queue's bytes."""


def queue_extent(session: Session | Connection) -> QueueExtent:
    """The queue's items and payload bytes, estimated in O(log n) whatever its depth: items from the ids'
    range (ids grow with every item and the digest takes the oldest first, so the range is the count, or
    a little more once another worker holds an older batch), bytes from the mean size of the newest
    `_EXTENT_SAMPLE` items. Counting the rows read every payload's pages: 200 MB at the bound."""
    connection = session.connection() if isinstance(session, Session) else session
    low, high = connection.exec_driver_sql("SELECT min(id), max(id) FROM raw_items").one()
    if low is None:
        return QueueExtent(0, 0)
    size = "octet_length" if connection.dialect.name == "postgresql" else "length"
    mean = connection.exec_driver_sql(
        f"SELECT avg(n) FROM (SELECT {size}(payload) AS n FROM raw_items ORDER BY id DESC LIMIT {_EXTENT_SAMPLE}) s"
    ).scalar()
    items = int(high) - int(low) + 1
    return QueueExtent(items, int(items * float(mean or 0)))


def queue_file_bytes(engine: Engine) -> int:
    """What the queue takes on disk: SQLite, the queue's file (pages, free ones included); PostgreSQL,
    `raw_items` with its TOAST table and indexes."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            return int(connection.exec_driver_sql("SELECT pg_total_relation_size('raw_items')").scalar() or 0)
        pages = connection.exec_driver_sql(f"PRAGMA {QUEUE_SCHEMA}.page_count").scalar() or 0
        page_size = connection.exec_driver_sql(f"PRAGMA {QUEUE_SCHEMA}.page_size").scalar() or 0
        return int(pages) * int(page_size)


def compact_queue(engine: Engine, *, min_free_bytes: int) -> int:
    """Give the queue's free space back to the file system, once a drain left at least `min_free_bytes`
    of it; returns the bytes given back (0 when there was too little to bother).

    SQLite: `VACUUM` of the queue's file (what remains is copied, so it is quick on a drained queue; intake
    waits for its write lock meanwhile), then a TRUNCATE checkpoint so its WAL shrinks too. PostgreSQL:
    `VACUUM raw_items`, which truncates the table's empty pages at its end (it takes the lock for that only
    when no intake transaction holds one, so it never blocks intake for long)."""
    before = queue_file_bytes(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            live = connection.exec_driver_sql("SELECT count(*) FROM (SELECT 1 FROM raw_items LIMIT 1000) s").scalar()
        if before < min_free_bytes or live:  # an empty table's every page is free; a busy one, not yet
            return 0
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM raw_items")
    else:
        with engine.connect() as connection:
            free = connection.exec_driver_sql(f"PRAGMA {QUEUE_SCHEMA}.freelist_count").scalar() or 0
            page_size = connection.exec_driver_sql(f"PRAGMA {QUEUE_SCHEMA}.page_size").scalar() or 0
        if int(free) * int(page_size) < min_free_bytes:
            return 0
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(f"VACUUM {QUEUE_SCHEMA}")
            cursor.execute(f"PRAGMA {QUEUE_SCHEMA}.wal_checkpoint(TRUNCATE)")
            cursor.close()
        finally:
            raw.close()
    return max(0, before - queue_file_bytes(engine))
