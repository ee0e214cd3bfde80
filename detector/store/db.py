"""Engine and sessions, built from a URL (never at import time), and schema upgrades through Alembic."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Engine, MetaData, Table, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateTable

from detector.errors import DatabaseUnavailable
from detector.store.bounds import install_value_bounds

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

log = logging.getLogger(__name__)


class PlainJson(dict):  # type: ignore[type-arg]
    """A JSON object of plain values only (string keys; str, int, bool, None, lists and such objects; no
    floats that are not finite), which the JSON columns may encode with `orjson`: the digest stores one
    per event. Every other value is encoded with `json.dumps`, as SQLAlchemy does by default."""

    __slots__ = ("_encoded",)

    def encode(self) -> str:
        """The JSON text, computed once: call it only when the object is complete."""
        try:
            return self._encoded
        except AttributeError:
            pass
        try:
            text = orjson.dumps(self).decode()
        except orjson.JSONEncodeError:  # e.g. a lone surrogate, which json.dumps escapes
            text = json.dumps(self)
        self._encoded = text
        return text


def _json_serializer(value: object) -> str:
    if type(value) is PlainJson:
        return value.encode()
    return json.dumps(value)


QUEUE_SCHEMA = "queue"
"""The name the raw intake queue's SQLite file is attached under on every connection (see `make_engine`)."""


@cache
def _queue_table_sql() -> tuple[str, ...]:
    """`CREATE TABLE IF NOT EXISTS` for the tables of the queue's file, `models.RawItem` and
    `models.RateWindow`, as SQLite declares them, minus foreign keys to `projects` (SQLite has none across
    files), with raw item ids that are never reused."""
    from detector.store.models import RateWindow, RawItem  # the models import nothing of this module; this keeps it so

    statements = []
    for model in (RawItem, RateWindow):
        columns = [
            Column(column.name, column.type, primary_key=column.primary_key, nullable=column.nullable)
            for column in model.__table__.columns
        ]
        # AUTOINCREMENT: an id is never used twice, even once the queue has been empty. The digest marks items
        # by id (`models.QueueDigested`); a reused id would match a mark not yet deleted, and be lost.
        table = Table(
            model.__tablename__, MetaData(), *columns, schema=QUEUE_SCHEMA, sqlite_autoincrement=model is RawItem
        )
        statements.append(str(CreateTable(table, if_not_exists=True).compile(dialect=sqlite.dialect())).strip())
    return tuple(statements)


def queue_database_path(database_path: str) -> str:
    """The file of the raw intake queue beside a SQLite database file: `detector.db` -> `detector.queue.db`
    (in memory when the database is)."""
    if not database_path or database_path == ":memory:" or database_path.startswith("file:"):
        return ":memory:"
    path = Path(database_path)
    return str(path.with_name(f"{path.stem}.queue{path.suffix}"))


def _sqlite_connection_setup(queue_path: str) -> Callable[[Any, Any], None]:
    def set_up(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # The raw queue lives in a file of its own, so intake's commits (which write only the queue) never
        # wait for SQLite's write lock on the main file, which the digest holds while it stores a batch.
        # Unqualified `raw_items` finds it: SQLite looks a name up in main, then in attached files, and from
        # migration 0004 on, main has no `raw_items`. Measured (bench.ingest, 30,000 events): accepted
        # 1,909-1,982 -> 4,066-4,444 events/s, p99 148 -> 51-72 ms.
        cursor.execute(f"ATTACH DATABASE ? AS {QUEUE_SCHEMA}", (queue_path,))
        # WAL lets the API read while the digest writes; NORMAL is durable against process crashes.
        # Without a schema name, journal_mode applies to every attached file; synchronous does not.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA {QUEUE_SCHEMA}.synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        for statement in _queue_table_sql():
            cursor.execute(statement)
        cursor.close()

    return set_up


DIGEST_PAGE_CACHE_KIB = 16384

WAL_AUTOCHECKPOINT_PAGES = 10000
"""SQLite: a connection whose commit finds a WAL this long (40 MB) checkpoints it itself. A fallback: while a
worker runs, its `WalCheckpointer` keeps every WAL far shorter, off the paths of intake and the digest."""

WAL_CHECKPOINT_INTERVAL_SECONDS = 0.1


def tune_digest_connection(connection: Connection) -> None:
    """Give a SQLite connection that digests a page cache of `DIGEST_PAGE_CACHE_KIB` instead of SQLite's
    2 MB, once per connection (it keeps it). A batch writes a few MB of pages (500 events of ~2 KB and
    their index entries); with 2 MB, SQLite re-read index pages it had evicted and spilled dirty pages
    before the commit: digest_cpu.py, 20,000 events, storage 238 -> 213 us/event, deleting the claimed
    items 8 -> 4. Only the digest's connection: the API's many connections keep the default."""
    connection.exec_driver_sql(f"PRAGMA cache_size = -{DIGEST_PAGE_CACHE_KIB}")
    connection.info["digest_connection"] = True


class WalCheckpointer:
    """SQLite: checkpoints the WALs of the main file and the queue's file every
    `WAL_CHECKPOINT_INTERVAL_SECONDS`, from a thread and a connection of its own (`Worker.run` starts one).

    A checkpoint copies the WAL's pages into the database and syncs both files to disk. Done by whichever
    commit found the WAL long, it stalled that commit, and the disk's sync stalled the other process's
    writes too: with the digest checkpointing every 10,000 pages, intake answered nothing for up to 160 ms
    twice in a 12 s run (bench.ingest --rate 5000, p99 113 ms); every 1,000 pages, p99 31 ms but the digest
    lost a fifth of its rate, waiting for its own checkpoints. PASSIVE checkpoints never wait for readers
    or writers; frequent ones stay small, and SQLite then reuses the WAL from its start."""

    def __init__(self, engine: Engine, interval: float = WAL_CHECKPOINT_INTERVAL_SECONDS) -> None:
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        connection = self.engine.raw_connection()
        try:
            while not self._stop.wait(self.interval):
                cursor = connection.cursor()
                try:
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")  # every attached file: main and queue
                    cursor.fetchall()
                except Exception as exc:  # the thread's boundary: a failed checkpoint is retried next time
                    log.warning("WAL checkpoint failed: %s", exc)
                finally:
                    cursor.close()
        finally:
            connection.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. SQLite files get their directory created and WAL mode, and every connection has
    the raw queue's file (`queue_database_path`) attached as `QUEUE_SCHEMA`."""
    try:
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""  # without ?query options
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                json_serializer=_json_serializer,
                **kwargs,
            )
            event.listen(engine, "connect", _sqlite_connection_setup(queue_database_path(path)))
        else:
            engine = create_engine(
                url, pool_pre_ping=True, pool_size=10, max_overflow=20, json_serializer=_json_serializer, **kwargs
            )
    except (ArgumentError, ImportError) as exc:
        raise DatabaseUnavailable(f"cannot use database URL {url!r}: {exc}") from exc
    install_value_bounds(engine)  # what a column cannot hold is a 400 naming it, on both databases alike
    return engine


def sqlite_free_bytes(engine: Engine) -> int | None:
    """Free bytes on the file system holding a SQLite database file (and its queue file beside it); None
    for PostgreSQL and in-memory SQLite. A small write can still succeed on a full disk (into WAL pages
    already allocated), so health looks at the space itself."""
    if engine.dialect.name != "sqlite" or not engine.url.database or engine.url.database == ":memory:":
        return None
    try:
        return shutil.disk_usage(Path(engine.url.database).resolve().parent).free
    except OSError:
        return None


def is_transient_database_error(exc: BaseException) -> bool:
    """Whether a failure is the database's state, not the request's or the items': unreachable, restarting,
    locked, out of disk, read-only, a deadlock (all OperationalError), or a connection lost mid-statement.
    The same work can succeed later, unchanged."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def database_error_reason(exc: BaseException) -> str:
    """The first line of the driver's message (SQLAlchemy's own repeats the statement and its parameters)."""
    reason = getattr(exc, "orig", None) or exc
    text = str(reason).strip()
    return text.splitlines()[0][:200] if text else type(reason).__name__


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (creating a SQLite file if needed)."""
    try:
        engine = make_engine(url)
        with engine.begin() as connection:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
        engine.dispose()
    except OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database at {safe_url(url)}: {exc.orig}") from exc


def is_up_to_date(engine: Engine) -> bool:
    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current) == set(script.get_heads())


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
