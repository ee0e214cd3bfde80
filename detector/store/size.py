"""How big the store is: rows of its main tables and bytes on disk, for `/metrics`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from detector.store.db import queue_database_path
from detector.store.models import (
    Anomaly,
    ArtifactFile,
    DeadLetter,
    Deploy,
    Event,
    RawItem,
    SessionMinute,
    SessionState,
    Signature,
    SignatureMinute,
)

MEASURED_TABLES = (
    Event,
    RawItem,
    DeadLetter,
    Signature,
    SignatureMinute,
    SessionState,
    SessionMinute,
    Deploy,
    Anomaly,
    ArtifactFile,
)
"""The tables that grow with traffic and releases (raw events until retention, the rest for good)."""

EXACT_COUNT_BELOW = 1_000_000
"""PostgreSQL: a table the planner estimates at more rows than this reports the estimate; counting it
exactly would scan it at every scrape."""


@dataclass(frozen=True)
class StoreSize:
    rows: dict[str, int]
    """Rows per table (PostgreSQL: the planner's estimate past `EXACT_COUNT_BELOW`)."""
    bytes_on_disk: int | None
    """The whole database: PostgreSQL's `pg_database_size`; SQLite's files (main and queue, with their
    WALs). None for an in-memory SQLite database."""
    table_bytes: dict[str, int]
    """PostgreSQL only: each table with its indexes and TOAST (`pg_total_relation_size`)."""


def measure_store(session: Session) -> StoreSize:
    if session.get_bind().dialect.name == "postgresql":
        return _measure_postgresql(session)
    return _measure_sqlite(session)


def _exact_rows(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _measure_postgresql(session: Session) -> StoreSize:
    rows: dict[str, int] = {}
    table_bytes: dict[str, int] = {}
    for model in MEASURED_TABLES:
        name = model.__tablename__  # type: ignore[attr-defined]
        estimate, size = session.execute(
            text("SELECT c.reltuples, pg_total_relation_size(c.oid) FROM pg_class c WHERE c.oid = to_regclass(:t)"),
            {"t": name},
        ).one()
        # reltuples is -1 until the table is first analysed, and stale between analyses: exact while small
        rows[name] = int(estimate) if estimate > EXACT_COUNT_BELOW else _exact_rows(session, model)
        table_bytes[name] = int(size)
    total = int(session.scalar(text("SELECT pg_database_size(current_database())")) or 0)
    return StoreSize(rows=rows, bytes_on_disk=total, table_bytes=table_bytes)


def _sqlite_files(database: str) -> list[Path]:
    files: list[Path] = []
    for path in (database, queue_database_path(database)):
        if path != ":memory:":
            files += [Path(path), Path(f"{path}-wal")]
    return files


def _measure_sqlite(session: Session) -> StoreSize:
    rows = {model.__tablename__: _exact_rows(session, model) for model in MEASURED_TABLES}  # type: ignore[attr-defined]
    database = session.get_bind().url.database or ":memory:"
    if database == ":memory:" or database.startswith("file:"):
        return StoreSize(rows=rows, bytes_on_disk=None, table_bytes={})
    total = sum(os.path.getsize(path) for path in _sqlite_files(database) if path.exists())
    return StoreSize(rows=rows, bytes_on_disk=total, table_bytes={})
