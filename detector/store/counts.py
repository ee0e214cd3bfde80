"""Events, signatures and the per-minute counts derived from them.

A batch changes the counts of exactly the keys it inserted events for, in the transaction that
inserted them, so a retried or replayed batch cannot count anything twice: `insert_events` returns
only the rows that were new (a retried event conflicts and is not returned). Where the schema has
the identity indexes (`ix_events_bucket_user`, `ix_events_bucket_session`), the counts grow by what
the new rows add (distinct users and sessions checked against the minute's stored events, one index
probe each); without them, each touched key is recomputed from its rows, which costs a read of the
whole minute of that key per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any, NamedTuple
from weakref import WeakKeyDictionary

import orjson
from sqlalchemy import (
    Engine,
    Table,
    and_,
    case,
    delete,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from detector.store.db import PlainJson
from detector.store.dialect import upsert_insert
from detector.store.models import (
    Event,
    SessionAggregate,
    SessionMinute,
    SessionSegmentMinute,
    SessionState,
    Signature,
    SignatureEnvironment,
    SignatureHour,
    SignatureMinute,
    SignatureRelease,
    SignatureReleaseUser,
    SignatureUser,
    SignatureUserHour,
)
from detector.store.types import UTCDateTime, sqlite_utc_text, utc_binder, utc_reader

SignatureMinuteKey = tuple[int, str, str, datetime]
SessionMinuteKey = tuple[str, str, datetime]


_SIGNATURE_COLUMNS = (
    "project_id",
    "hash",
    "type",
    "value",
    "culprit",
    "title",
    "noise_class",
    "in_app",
    "first_seen",
    "last_seen",
    "first_release",
    "events",
    "users",
)
_UPSERT_SIGNATURES_SQLITE = (
    f"INSERT INTO signatures ({', '.join(_SIGNATURE_COLUMNS)}) VALUES {{rows}} "
    "ON CONFLICT (project_id, hash) DO UPDATE SET "
    "first_seen = min(signatures.first_seen, excluded.first_seen), "
    "last_seen = max(signatures.last_seen, excluded.last_seen) "
    "RETURNING hash, id"
)


def upsert_signatures(session: Session, project_id: int, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Insert new signatures (by hash), widen first/last seen of known ones; returns hash → id."""
    if not rows:
        return {}
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        return _upsert_signatures_sqlite(connection, project_id, rows)
    stmt = upsert_insert(session, Signature)
    stmt = stmt.on_conflict_do_nothing(index_elements=["project_id", "hash"])
    session.execute(stmt, [{"project_id": project_id, **row} for row in rows])
    hashes = [row["hash"] for row in rows]
    known = session.execute(
        select(Signature.hash, Signature.id, Signature.first_seen, Signature.last_seen).where(
            Signature.project_id == project_id, Signature.hash.in_(hashes)
        )
    ).all()
    by_hash = {row["hash"]: row for row in rows}
    ids: dict[str, int] = {}
    widened: list[dict[str, Any]] = []
    for sig_hash, sig_id, first_seen, last_seen in known:
        ids[sig_hash] = sig_id
        row = by_hash[sig_hash]
        if row["first_seen"] < first_seen or row["last_seen"] > last_seen:
            widened.append(
                {
                    "id": sig_id,
                    "first_seen": min(first_seen, row["first_seen"]),
                    "last_seen": max(last_seen, row["last_seen"]),
                }
            )
    if widened:
        session.execute(update(Signature), widened)  # ORM bulk UPDATE by primary key
    return ids


def _upsert_signatures_sqlite(
    connection: Connection, project_id: int, rows: Sequence[dict[str, Any]]
) -> dict[str, int]:
    """SQLite: one INSERT ... ON CONFLICT DO UPDATE ... RETURNING of tuples, instead of an executemany of
    dicts, a SELECT and an UPDATE through SQLAlchemy. A known signature's first/last seen become the
    min/max of the stored and the new ones (the stored text, `YYYY-MM-DD HH:MM:SS.ffffff`, sorts as
    the time); the row is written even when nothing widens, which costs little, as the batch's
    `add_signature_rollups` writes the same row again. The defaults are the model's."""
    to_db = sqlite_utc_text
    params: list[Any] = []
    for row in rows:
        params += (
            project_id,
            row["hash"],
            row["type"],
            row["value"],
            row["culprit"],
            row["title"],
            row.get("noise_class"),
            row.get("in_app", True),  # the driver stores a bool as 1 or 0, as SQLAlchemy's Boolean does
            to_db(row["first_seen"]),
            to_db(row["last_seen"]),
            row.get("first_release", ""),
            0,
            0,
        )
    return dict(_insert_values(connection, _UPSERT_SIGNATURES_SQLITE, len(_SIGNATURE_COLUMNS), params))


class InsertedEvent(NamedTuple):
    """An event row this transaction inserted: its count key, its id, and who it counts as."""

    signature_id: int
    release: str
    environment: str
    minute: datetime
    id: int
    user: str
    """`coalesce(user_key, session_key, event_id)`: what `users` counts distinct."""
    session: str
    """`coalesce(session_key, user_key, event_id)`: what `sessions` counts distinct."""

    @property
    def key(self) -> SignatureMinuteKey:
        return (self.signature_id, self.release, self.environment, self.minute)


_EVENTS = Event.__table__
_SIGNATURE_USERS = SignatureUser.__table__
_SIGNATURE_RELEASE_USERS = SignatureReleaseUser.__table__
_SIGNATURE_HOURS = SignatureHour.__table__
_SIGNATURE_ENVIRONMENTS = SignatureEnvironment.__table__
_SIGNATURE_USER_HOURS = SignatureUserHour.__table__
_SIGNATURE_RELEASES = SignatureRelease.__table__
_USER = func.coalesce(_EVENTS.c.user_key, _EVENTS.c.session_key, _EVENTS.c.event_id)
_SESSION = func.coalesce(_EVENTS.c.session_key, _EVENTS.c.user_key, _EVENTS.c.event_id)
# Spelled as in the identity indexes, so that the planner uses them.
_USER_SQL = "coalesce(e.user_key, e.session_key, e.event_id)"
_SESSION_SQL = "coalesce(e.session_key, e.user_key, e.event_id)"
IDENTITY_INDEXES = frozenset({"ix_events_bucket_user", "ix_events_bucket_session"})
_identity_indexes: WeakKeyDictionary[Engine, bool] = WeakKeyDictionary()


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> list[InsertedEvent]:
    """Insert events not stored yet (by project and event_id); those inserted, with their count keys."""
    if not rows:
        return []
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _insert_events_unnest(connection, rows)
    if connection.dialect.name == "sqlite":
        return _insert_events_sqlite(connection, rows)
    c = _EVENTS.c
    stmt = upsert_insert(session, _EVENTS).on_conflict_do_nothing(index_elements=["project_id", "event_id"])
    stmt = stmt.returning(c.signature_id, c.release, c.environment, c.minute, c.id, _USER, _SESSION)
    # Core executemany (batched INSERT ... RETURNING), not the ORM's bulk insert: the digest's hot path.
    return [InsertedEvent(*r) for r in connection.execute(stmt, list(rows))]


_EVENT_ARRAYS = [
    ("project_id", "int"),
    ("event_id", "text"),
    ("signature_id", "bigint"),
    ("release", "text"),
    ("environment", "text"),
    ("timestamp", "timestamp"),
    ("minute", "timestamp"),
    ("received_at", "timestamp"),
    ("user_key", "text"),
    ("session_key", "text"),
    ("route", "text"),
    ("browser", "text"),
    ("os", "text"),
    ("data", "jsonb"),
]
_INSERT_EVENTS_UNNEST = (
    f"INSERT INTO events ({', '.join(name for name, _ in _EVENT_ARRAYS)}) "
    f"SELECT * FROM unnest({', '.join(f'%b::{kind}[]' for _, kind in _EVENT_ARRAYS)}) "
    "ON CONFLICT (project_id, event_id) DO NOTHING "
    "RETURNING signature_id, release, environment, minute, id, "
    "coalesce(user_key, session_key, event_id), coalesce(session_key, user_key, event_id)"
)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _insert_events_unnest(connection: Connection, rows: Sequence[dict[str, Any]]) -> list[InsertedEvent]:
    """PostgreSQL: one statement with one array per column. SQLAlchemy's multi-row VALUES has
    thousands of parameters, which psycopg re-parses on every execution (it caches only small
    statements): that parsing was half of the digest's time on PostgreSQL."""
    columns: list[list[Any]] = []
    for name, kind in _EVENT_ARRAYS:
        if kind == "timestamp":
            columns.append([_naive_utc(row[name]) for row in rows])
        elif kind == "jsonb":
            columns.append([orjson.dumps(row[name]).decode() for row in rows])
        else:
            columns.append([row[name] for row in rows])
    result = connection.exec_driver_sql(_INSERT_EVENTS_UNNEST, tuple(columns))
    return [
        InsertedEvent(sig, rel, env, minute.replace(tzinfo=UTC), pk, user, sess)
        for sig, rel, env, minute, pk, user, sess in result
    ]


_INSERT_EVENTS_SQLITE = (
    f"INSERT INTO events ({', '.join(name for name, _ in _EVENT_ARRAYS)}) VALUES {{rows}} "
    "ON CONFLICT (project_id, event_id) DO NOTHING "
    "RETURNING signature_id, release, environment, minute, id, "
    "coalesce(user_key, session_key, event_id), coalesce(session_key, user_key, event_id)"
)


def _insert_events_sqlite(connection: Connection, rows: Sequence[dict[str, Any]]) -> list[InsertedEvent]:
    """SQLite: multi-row INSERT ... RETURNING statements of plain values sent to the driver. SQLAlchemy's
    executemany built and processed a parameter dict per row (bind processors of three datetimes and
    the JSON), 15 % of the worker's time end to end. The datetimes become the text `UTCDateTime` stores
    (`sqlite_utc_text`, the same text), a `PlainJson` its `encode()` (what the JSON column's serializer
    calls), any other JSON value goes through the column's bind processor."""
    to_db = sqlite_utc_text
    json_bind = _EVENTS.c.data.type._cached_bind_processor(connection.dialect)
    assert json_bind is not None
    minutes: dict[datetime, str] = {}  # a batch spans few minutes
    params: list[Any] = []
    for row in rows:
        minute = row["minute"]
        stored_minute = minutes.get(minute)
        if stored_minute is None:
            stored_minute = minutes[minute] = to_db(minute)
        data = row["data"]
        params += (
            row["project_id"],
            row["event_id"],
            row["signature_id"],
            row["release"],
            row["environment"],
            to_db(row["timestamp"]),
            stored_minute,
            to_db(row["received_at"]),
            row["user_key"],
            row["session_key"],
            row["route"],
            row["browser"],
            row["os"],
            data.encode() if type(data) is PlainJson else json_bind(data),
        )
    from_db = utc_reader(connection.dialect)
    return [
        InsertedEvent(sig, rel, env, from_db(minute), pk, user, sess)
        for sig, rel, env, minute, pk, user, sess in _insert_values(
            connection, _INSERT_EVENTS_SQLITE, len(_EVENT_ARRAYS), params
        )
    ]


def _insert_values(connection: Connection, template: str, width: int, params: Sequence[Any]) -> list[Any]:
    """Run `template` (a statement with `{rows}` where its VALUES rows go) over `params` (`width` values per
    row, flat) and return the rows it returns. The rows go in pieces of 256, 128, ..., 1 rows (the binary
    digits of their number), so that the driver's statement cache holds every statement the digest sends
    (9 texts): SQLite spent about 9 us per row preparing a new multi-row VALUES statement, and batches
    vary in length."""
    marks = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    rows = len(params) // width
    returned: list[Any] = []
    start = 0
    while start < rows:
        size = min(_LARGEST_PIECE, 1 << ((rows - start).bit_length() - 1))
        end = start + size
        sql = _sql_for(template, marks, width, size)
        returned += connection.exec_driver_sql(sql, tuple(params[start * width : end * width])).all()
        start = end
    return returned


_LARGEST_PIECE = 256
_SQL_TEXTS: dict[tuple[str, str, int, int], str] = {}


def _sql_for(template: str, marks: str, width: int, rows: int) -> str:
    """`template` with `{rows}` replaced by `rows` rows of `width` parameter marks (memoised)."""
    key = (template, marks, width, rows)
    sql = _SQL_TEXTS.get(key)
    if sql is None:
        row = "(" + ", ".join([marks] * width) + ")"
        sql = _SQL_TEXTS[key] = template.replace("{rows}", ", ".join([row] * rows))
    return sql


def has_identity_indexes(session: Session) -> bool:
    """Whether the events table has the indexes that make incremental distinct counts cheap."""
    engine = session.get_bind().engine
    known = _identity_indexes.get(engine)
    if known is None:
        # The catalogs, not SQLAlchemy's reflection, which skips expression indexes on SQLite.
        if session.get_bind().dialect.name == "postgresql":
            query = text("SELECT indexname FROM pg_indexes WHERE tablename = 'events'")
        else:
            query = text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")
        names = set(session.connection().execute(query).scalars())
        known = _identity_indexes[engine] = names >= IDENTITY_INDEXES
    return known


def add_signature_minutes(session: Session, project_id: int, inserted: Sequence[InsertedEvent]) -> None:
    """Count the events just inserted (in this transaction) in their per-minute counts.

    Call it after `lock_project`, so that concurrent workers see each other's committed rows.
    """
    if not has_identity_indexes(session):
        recompute_signature_minutes(session, project_id, [row.key for row in inserted])
        return
    by_key: dict[SignatureMinuteKey, list[InsertedEvent]] = {}
    new_ids: set[int] = set()
    connection = session.connection()
    dialect = connection.dialect
    to_db = _memoised(utc_binder(dialect))
    from_db = utc_reader(dialect)
    # Who the minute's stored events count already: one index probe per (signature, minute, identity)
    # of the batch, for users and sessions in one statement; the batch's own rows are skipped by id.
    # The probes in the order first met, not sorted: a read, whose order changes nothing it finds.
    probes: dict[tuple[str, int, str, str], None] = {}
    for row in inserted:
        sig, rel, env, minute, pk, user, session_key = row
        by_key.setdefault((sig, rel, env, minute), []).append(row)
        new_ids.add(pk)
        stored_minute = to_db(minute)
        probes[("u", sig, stored_minute, user)] = None
        probes[("s", sig, stored_minute, session_key)] = None
    seen: set[tuple[str, SignatureMinuteKey, str]] = set()
    keys = list(probes)
    if dialect.name == "sqlite":
        found = _probe_rows(connection, _MINUTE_PROBE, keys)
    else:  # one statement per index, as PostgreSQL's planner is sure to match each to its index
        found = []
        for kind, template in (("u", _MINUTE_PROBE_USERS), ("s", _MINUTE_PROBE_SESSIONS)):
            found += _probe_rows(connection, template, [key[1:] for key in keys if key[0] == kind])
    for kind, sig, rel, env, minute, event_pk, value in found:
        if event_pk not in new_ids:
            seen.add((kind, (sig, rel, env, from_db(minute)), value))
    values_ = [
        (
            *key[:3],
            to_db(key[3]),
            project_id,
            len(rows),
            len({r.user for r in rows if ("u", key, r.user) not in seen}),
            len({r.session for r in rows if ("s", key, r.session) not in seen}),
        )
        for key, rows in sorted(by_key.items())
    ]
    if values_:
        connection.exec_driver_sql(
            _add_sql(connection, _SIGNATURE_MINUTES, ("events", "users", "sessions")),
            values_,
        )


_SIGNATURE_MINUTES = SignatureMinute.__table__
# Users and sessions in one statement, each half spelled as its identity index (so the planner uses it);
# a probe row of the other kind matches nothing in a half (its kind differs).
_MINUTE_PROBE = (
    "WITH probe (kind, signature_id, minute, identity) AS (VALUES {rows}) "
    f"SELECT 'u', e.signature_id, e.release, e.environment, e.minute, e.id, {_USER_SQL} "
    f"FROM probe JOIN events e ON probe.kind = 'u' AND e.signature_id = probe.signature_id "
    f"AND e.minute = probe.minute AND {_USER_SQL} = probe.identity "
    "UNION ALL "
    f"SELECT 's', e.signature_id, e.release, e.environment, e.minute, e.id, {_SESSION_SQL} "
    f"FROM probe JOIN events e ON probe.kind = 's' AND e.signature_id = probe.signature_id "
    f"AND e.minute = probe.minute AND {_SESSION_SQL} = probe.identity"
)
_MINUTE_PROBE_USERS, _MINUTE_PROBE_SESSIONS = (
    "WITH probe (signature_id, minute, identity) AS (VALUES {rows}) "
    f"SELECT '{kind}', e.signature_id, e.release, e.environment, e.minute, e.id, {expression} "
    f"FROM probe JOIN events e ON e.signature_id = probe.signature_id "
    f"AND e.minute = probe.minute AND {expression} = probe.identity"
    for kind, expression in (("u", _USER_SQL), ("s", _SESSION_SQL))
)


def _memoised(function: Any) -> Any:
    """`function` of one hashable argument, remembering its results (for the few minutes of a batch)."""
    cache: dict[Any, Any] = {}

    def call(value: Any) -> Any:
        try:
            return cache[value]
        except KeyError:
            result = cache[value] = function(value)
            return result

    return call


def _probe_rows(connection: Connection, template: str, keys: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Rows of `template` (a query over `WITH probe (...) AS (VALUES {rows})`) for `keys`.

    SQLite: in pieces of up to 512 keys, each padded with NULL keys (which match nothing) to a power of
    two: the statements' texts repeat, so the driver's statement cache keeps them prepared (SQLite spent
    about 9 us per key preparing a new VALUES list, and every batch's lists differed in length).
    PostgreSQL: the VALUES lists as they were, unpadded, with PostgreSQL's own numbered parameters through
    psycopg's `RawCursor`: psycopg's usual cursor splits a statement's text at each `%s` on every
    execution (it caches only statements of up to 50 parameters), 14 % of the digest's wall time there.
    `unnest` of arrays would avoid the long lists, but the planner, without statistics on a young table,
    then probed users through the session index (0.5 ms per key): left until it can be tested at scale."""
    if not keys:
        return []
    width = len(keys[0])
    rows: list[Any] = []
    if connection.dialect.name == "postgresql":
        from psycopg import RawCursor

        driver_connection = connection.connection.driver_connection
        for start in range(0, len(keys), _LARGEST_PROBE):
            chunk = keys[start : start + _LARGEST_PROBE]
            with RawCursor(driver_connection) as cursor:
                cursor.execute(_numbered_sql_for(template, width, len(chunk)), tuple(chain.from_iterable(chunk)))
                rows += cursor.fetchall()
        return rows
    marks = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    padding = (None,) * width
    pad = connection.dialect.name == "sqlite"
    for start in range(0, len(keys), _LARGEST_PROBE):
        chunk = list(keys[start : start + _LARGEST_PROBE])
        size = max(8, 1 << (len(chunk) - 1).bit_length()) if pad else len(chunk)
        chunk += [padding] * (size - len(chunk))
        params = tuple(chain.from_iterable(chunk))
        rows += connection.exec_driver_sql(_sql_for(template, marks, width, size), params).all()
    return rows


_NUMBERED_SQL_TEXTS: dict[tuple[str, int, int], str] = {}


def _numbered_sql_for(template: str, width: int, rows: int) -> str:
    """`template` with `{rows}` replaced by `rows` rows of `width` PostgreSQL parameters `$1, $2, ...`,
    memoised for whole pieces only (the lists are not padded, and a text per length would be megabytes)."""
    key = (template, width, rows)
    sql = _NUMBERED_SQL_TEXTS.get(key)
    if sql is None:
        values = ", ".join(
            "(" + ", ".join(f"${row * width + column + 1}" for column in range(width)) + ")" for row in range(rows)
        )
        sql = template.replace("{rows}", values)
        if rows == _LARGEST_PROBE:
            _NUMBERED_SQL_TEXTS[key] = sql
    return sql


_LARGEST_PROBE = 512
_ADD_SQL: dict[tuple[str, str, tuple[str, ...]], str] = {}


def _add_sql(connection: Connection, table: Table, columns: tuple[str, ...]) -> str:
    """An upsert of one row of `table` (its primary key, `project_id`, then `columns`) that adds `columns`
    to a stored row's, for the driver's executemany: SQLAlchemy's processed a parameter dict per row."""
    marks = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    cache_key = (table.name, marks, columns)
    sql = _ADD_SQL.get(cache_key)
    if sql is None:
        keys = table.primary_key.columns.keys()
        names = [*keys, "project_id", *columns]
        sql = _ADD_SQL[cache_key] = (
            f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join([marks] * len(names))}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(f"{column} = {table.name}.{column} + excluded.{column}" for column in columns)
        )
    return sql


def add_signature_rollups(session: Session, project_id: int, inserted: Sequence[InsertedEvent]) -> None:
    """Add the events just inserted to the per-signature totals the signature list reads.

    Who hit a signature is kept twice, with the latest minute they did: per signature
    (`signature_users`) and per signature, release and environment (`signature_release_users`). A
    row's insertion, not a lookup, is what makes a user new to a total, so two workers cannot both
    count one; otherwise its `last_minute` moves forward. `signature_releases` and `signatures` then
    add the events and the users new to them. Call it after `lock_project`, like `add_signature_minutes`.
    """
    if not inserted:
        return
    connection = session.connection()
    to_db = _memoised(utc_binder(connection.dialect))
    per_user: dict[tuple[Any, ...], datetime] = {}
    per_release_user: dict[tuple[Any, ...], datetime] = {}
    per_release: dict[tuple[int, str, str], list[Any]] = {}
    events_per_signature: dict[int, int] = {}
    per_hour: dict[tuple[int, datetime, str, str], int] = {}
    hours = _memoised(floor_hour)  # the minutes are UTC (as read back), so equal ones floor alike
    for sig, rel, env, minute, _pk, user, _session in inserted:
        key: tuple[Any, ...] = (sig, user)
        known = per_user.get(key)
        if known is None or minute > known:
            per_user[key] = minute
        key = (sig, env, user, rel)
        known = per_release_user.get(key)
        if known is None or minute > known:
            per_release_user[key] = minute
        totals = per_release.get((sig, rel, env))
        if totals is None:
            per_release[(sig, rel, env)] = [1, minute, minute]
        else:
            totals[0] += 1
            if minute < totals[1]:
                totals[1] = minute
            if minute > totals[2]:
                totals[2] = minute
        events_per_signature[sig] = events_per_signature.get(sig, 0) + 1
        hour_key = (sig, hours(minute), rel, env)
        per_hour[hour_key] = per_hour.get(hour_key, 0) + 1

    new_users = _record_signature_users(session, project_id, per_user)
    new_release_users, _ = _record_last_minutes(session, _SIGNATURE_RELEASE_USERS, project_id, per_release_user)
    new_per_release: dict[tuple[int, str, str], int] = {}
    for sig, env, _identity, rel in new_release_users:
        new_per_release[(sig, rel, env)] = new_per_release.get((sig, rel, env), 0) + 1
    new_per_signature: dict[int, int] = {}
    for sig, _identity in new_users:
        new_per_signature[sig] = new_per_signature.get(sig, 0) + 1

    connection.exec_driver_sql(
        _release_upsert_sql(connection),
        [
            (*key, project_id, n, new_per_release.get(key, 0), to_db(first), to_db(last))
            for key, (n, first, last) in sorted(per_release.items())
        ],
    )
    _add_counts(session, _SIGNATURE_HOURS, ("events",), {k: (n,) for k, n in per_hour.items()}, project_id)
    # Per environment, all releases: a user is new to it when all its rows there were inserted just now.
    per_environment: dict[tuple[int, str], list[int]] = {}
    for (sig, _rel, env), (n, _first, _last) in per_release.items():
        per_environment.setdefault((sig, env), [0, 0])[0] += n
    inserted_here: dict[tuple[int, str, str], int] = {}
    for sig, env, identity, _rel in new_release_users:
        inserted_here[(sig, env, identity)] = inserted_here.get((sig, env, identity), 0) + 1
    for sig, env, identity, stored in _probe(
        session,
        _SIGNATURE_RELEASE_USERS,
        ["signature_id", "environment", "identity"],
        sorted(inserted_here),
        "t.signature_id, t.environment, t.identity, count(*)",
        "GROUP BY t.signature_id, t.environment, t.identity",
    ):
        if stored == inserted_here[(sig, env, identity)]:
            per_environment[(sig, env)][1] += 1
    _add_counts(
        session,
        _SIGNATURE_ENVIRONMENTS,
        ("events", "users"),
        {k: (v[0], v[1]) for k, v in per_environment.items()},
        project_id,
    )
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        f"UPDATE signatures SET events = signatures.events + {mark}, users = signatures.users + {mark} "
        f"WHERE signatures.id = {mark}",
        [(n, new_per_signature.get(sig, 0), sig) for sig, n in sorted(events_per_signature.items())],
    )


def _release_upsert_sql(connection: Connection) -> str:
    """The upsert of one `signature_releases` row: events and users added, first/last seen widened."""
    marks = ", ".join(["?" if connection.dialect.paramstyle == "qmark" else "%s"] * 8)
    return (
        "INSERT INTO signature_releases "
        f"(signature_id, release, environment, project_id, events, users, first_seen, last_seen) VALUES ({marks}) "
        "ON CONFLICT (signature_id, release, environment) DO UPDATE SET "
        "events = signature_releases.events + excluded.events, "
        "users = signature_releases.users + excluded.users, "
        "first_seen = CASE WHEN excluded.first_seen < signature_releases.first_seen "
        "THEN excluded.first_seen ELSE signature_releases.first_seen END, "
        "last_seen = CASE WHEN excluded.last_seen > signature_releases.last_seen "
        "THEN excluded.last_seen ELSE signature_releases.last_seen END"
    )


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def _add_counts(
    session: Session,
    table: Table,
    columns: tuple[str, ...],
    deltas: dict[tuple[Any, ...], tuple[int, ...]],
    project_id: int,
) -> None:
    """Add `deltas` (primary key → one amount per column) to `table`, inserting the keys it lacks."""
    connection = session.connection()
    to_db = _memoised(utc_binder(connection.dialect))
    # Which parts of the primary key are times (`hour`), stored as `UTCDateTime` stores them.
    is_time = [isinstance(column.type, UTCDateTime) for column in table.primary_key.columns]
    rows = [
        (
            *[to_db(part) if time else part for part, time in zip(key, is_time, strict=True)],
            project_id,
            *amounts,
        )
        for key, amounts in sorted(deltas.items())
        if any(amounts)
    ]
    if rows:
        connection.exec_driver_sql(_add_sql(connection, table, columns), rows)


def _record_signature_users(
    session: Session, project_id: int, latest: dict[tuple[Any, ...], datetime]
) -> set[tuple[Any, ...]]:
    """`_record_last_minutes` for `signature_users`, keeping its histogram by hour of `last_minute`
    (`signature_user_hours`) in step: a user moves from the hour they were last seen in to the new one."""
    inserted, before = _record_last_minutes(session, _SIGNATURE_USERS, project_id, latest)
    hours = _memoised(floor_hour)  # the minutes are UTC (given, and as read back), so equal ones floor alike
    deltas: dict[tuple[int, datetime], int] = {}
    for key, minute in latest.items():
        if key in inserted:
            hour = (key[0], hours(minute))
            deltas[hour] = deltas.get(hour, 0) + 1
        elif minute > before[key]:
            old, new = (key[0], hours(before[key])), (key[0], hours(minute))
            if old != new:
                deltas[old] = deltas.get(old, 0) - 1
                deltas[new] = deltas.get(new, 0) + 1
    _add_counts(session, _SIGNATURE_USER_HOURS, ("users",), {k: (n,) for k, n in deltas.items()}, project_id)
    return inserted


def _probe(
    session: Session, table: Table, columns: list[str], keys: Sequence[tuple[Any, ...]], select_sql: str, tail: str = ""
) -> list[Any]:
    """Rows of `table` (aliased `t`) matching `keys` on `columns`, by one index probe per key: `select_sql`
    is the select list, `tail` a GROUP BY. Plain SQL: SQLAlchemy would compile a list of this size anew for
    every batch, and its per-parameter processing was most of the digest's time spent here."""
    match = " AND ".join(f"t.{name} = probe.{name}" for name in columns)
    template = (
        f"WITH probe ({', '.join(columns)}) AS (VALUES {{rows}}) "
        f"SELECT {select_sql} FROM probe JOIN {table.name} t ON {match} {tail}"
    )
    return _probe_rows(session.connection(), template, keys)


def _record_last_minutes(
    session: Session, table: Table, project_id: int, latest: dict[tuple[Any, ...], datetime]
) -> tuple[set[tuple[Any, ...]], dict[tuple[Any, ...], datetime]]:
    """Insert the keys `table` lacks (their primary key, `project_id`, `last_minute`) and move the others'
    `last_minute` forward; returns the keys inserted and the others' `last_minute` before.

    The keys present are read first: the caller holds the project's digest lock (`lock_project`) and the
    transaction has written already (SQLite's write lock), so no other digest adds rows meanwhile."""
    connection = session.connection()
    dialect = connection.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    to_db = utc_binder(dialect)
    from_db = utc_reader(dialect)
    names = table.primary_key.columns.keys()
    keys = sorted(latest)
    before = {
        tuple(row[:-1]): from_db(row[-1])
        for row in _probe(session, table, names, keys, ", ".join(f"t.{name}" for name in names) + ", t.last_minute")
    }
    stored = {minute: to_db(minute) for minute in set(latest.values())}  # a batch spans few minutes
    new_rows = [(*key, project_id, stored[latest[key]]) for key in keys if key not in before]
    if new_rows:
        connection.exec_driver_sql(
            f"INSERT INTO {table.name} ({', '.join(names)}, project_id, last_minute) "
            f"VALUES ({', '.join([mark] * (len(names) + 2))})",
            new_rows,
        )
    moved = [
        (stored[latest[key]], *key, stored[latest[key]]) for key in keys if key in before and latest[key] > before[key]
    ]
    if moved:
        connection.exec_driver_sql(
            f"UPDATE {table.name} SET last_minute = {mark} WHERE "
            + " AND ".join(f"{name} = {mark}" for name in names)
            + f" AND last_minute < {mark}",
            moved,
        )
    return {key for key in keys if key not in before}, before


def recompute_signature_minutes(session: Session, project_id: int, keys: Iterable[SignatureMinuteKey]) -> None:
    """Set the counts of each (signature, release, environment, minute) key from its events."""
    key_list = sorted(set(keys))
    for start in range(0, len(key_list), 200):
        chunk = key_list[start : start + 200]
        # `signature_id IN` and `minute IN` make the planner use the (signature_id, minute) index, so a
        # batch reads only the events of the minutes it touched. With `project_id =` and the row-value
        # IN alone, SQLite read every event of the project, each batch (quadratic in the history).
        # No `project_id =` is needed: a signature belongs to one project.
        match = and_(
            Event.signature_id.in_({key[0] for key in chunk}),
            Event.minute.in_({key[3] for key in chunk}),
            tuple_(Event.signature_id, Event.release, Event.environment, Event.minute).in_(chunk),
        )
        counted = session.execute(
            select(
                Event.signature_id,
                Event.release,
                Event.environment,
                Event.minute,
                func.count(),
                func.count(func.distinct(func.coalesce(Event.user_key, Event.session_key, Event.event_id))),
                func.count(func.distinct(func.coalesce(Event.session_key, Event.user_key, Event.event_id))),
            )
            .where(match)
            .group_by(Event.signature_id, Event.release, Event.environment, Event.minute)
        ).all()
        values = [
            {
                "project_id": project_id,
                "signature_id": sig,
                "release": rel,
                "environment": env,
                "minute": minute,
                "events": n,
                "users": users,
                "sessions": sessions,
            }
            for sig, rel, env, minute, n, users, sessions in counted
        ]
        if values:
            stmt = upsert_insert(session, SignatureMinute)
            stmt = stmt.on_conflict_do_update(
                index_elements=["signature_id", "release", "environment", "minute"],
                set_={
                    "events": stmt.excluded.events,
                    "users": stmt.excluded.users,
                    "sessions": stmt.excluded.sessions,
                },
            )
            session.execute(stmt, values)


def upsert_session_states(session: Session, project_id: int, rows: Sequence[dict[str, Any]]) -> list[SessionMinuteKey]:
    """Merge session updates into one row per sid (errors and flags only grow); the keys touched."""
    touched: list[SessionMinuteKey] = []
    if not rows:
        return touched
    sids = [row["sid"] for row in rows]
    existing = {
        s.sid: s
        for s in session.scalars(
            select(SessionState).where(SessionState.project_id == project_id, SessionState.sid.in_(sids))
        )
    }
    for row in rows:
        state = existing.get(row["sid"])
        if state is None:
            state = SessionState(project_id=project_id, **row)
            session.add(state)
            existing[row["sid"]] = state
        else:
            touched.append((state.release, state.environment, state.started_minute))
            if row["updated"] >= state.updated:
                state.status = row["status"]
                state.updated = row["updated"]
            state.errors = max(state.errors, row["errors"])
            state.errored = state.errored or row["errored"]
            state.crashed = state.crashed or row["crashed"]
            if state.segment is None and row.get("segment"):
                state.segment = row["segment"]
            if row["started"] < state.started:
                state.started, state.started_minute = row["started"], row["started_minute"]
        touched.append((state.release, state.environment, state.started_minute))
    session.flush()
    return touched


def add_session_aggregates(session: Session, project_id: int, rows: Sequence[dict[str, Any]]) -> list[SessionMinuteKey]:
    """Add pre-aggregated session counts (each raw item is digested exactly once)."""
    for row in rows:
        stmt = upsert_insert(session, SessionAggregate).values(project_id=project_id, **row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["project_id", "release", "environment", "minute"],
            set_={
                "started": SessionAggregate.started + stmt.excluded.started,
                "errored": SessionAggregate.errored + stmt.excluded.errored,
                "crashed": SessionAggregate.crashed + stmt.excluded.crashed,
            },
        )
        session.execute(stmt)
    return [(row["release"], row["environment"], row["minute"]) for row in rows]


def recompute_session_minutes(session: Session, project_id: int, keys: Iterable[SessionMinuteKey]) -> None:
    """Set started/errored/crashed of each (release, environment, minute) from session rows and aggregates,
    and its per-segment sessions (`SessionSegmentMinute`) from the session rows that have a segment."""
    key_list = sorted(set(keys))
    for start in range(0, len(key_list), 200):
        chunk = key_list[start : start + 200]
        totals: dict[SessionMinuteKey, list[int]] = {key: [0, 0, 0] for key in chunk}
        by_segment: dict[tuple[str, str, datetime, str], list[int]] = {}
        states = session.execute(
            select(
                SessionState.release,
                SessionState.environment,
                SessionState.started_minute,
                SessionState.segment,
                func.count(),
                func.sum(case((SessionState.errored, 1), else_=0)),
                func.sum(case((SessionState.crashed, 1), else_=0)),
            )
            .where(
                SessionState.project_id == project_id,
                tuple_(SessionState.release, SessionState.environment, SessionState.started_minute).in_(chunk),
            )
            .group_by(SessionState.release, SessionState.environment, SessionState.started_minute, SessionState.segment)
        ).all()
        aggregates = session.execute(
            select(
                SessionAggregate.release,
                SessionAggregate.environment,
                SessionAggregate.minute,
                SessionAggregate.started,
                SessionAggregate.errored,
                SessionAggregate.crashed,
            ).where(
                SessionAggregate.project_id == project_id,
                tuple_(SessionAggregate.release, SessionAggregate.environment, SessionAggregate.minute).in_(chunk),
            )
        ).all()
        for rel, env, minute, segment, started, errored, crashed in states:
            if segment is not None:
                by_segment[(rel, env, minute, segment)] = [int(started or 0), int(errored or 0)]
            total = totals[(rel, env, minute)]
            total[0] += int(started or 0)
            total[1] += int(errored or 0)
            total[2] += int(crashed or 0)
        for rel, env, minute, started, errored, crashed in aggregates:
            total = totals[(rel, env, minute)]
            total[0] += int(started or 0)
            total[1] += int(errored or 0)
            total[2] += int(crashed or 0)
        values = [
            {
                "project_id": project_id,
                "release": rel,
                "environment": env,
                "minute": minute,
                "started": t[0],
                "errored": t[1],
                "crashed": t[2],
            }
            for (rel, env, minute), t in totals.items()
        ]
        stmt = upsert_insert(session, SessionMinute)
        stmt = stmt.on_conflict_do_update(
            index_elements=["project_id", "release", "environment", "minute"],
            set_={
                "started": stmt.excluded.started,
                "errored": stmt.excluded.errored,
                "crashed": stmt.excluded.crashed,
            },
        )
        session.execute(stmt, values)
        _replace_segment_minutes(session, project_id, chunk, by_segment)


def _replace_segment_minutes(
    session: Session,
    project_id: int,
    keys: Sequence[SessionMinuteKey],
    by_segment: dict[tuple[str, str, datetime, str], list[int]],
) -> None:
    """The segment rows of `keys` become exactly `by_segment`: a session whose start moved to an earlier
    minute leaves its old minute's segment, so rows are replaced rather than upserted."""
    table = SessionSegmentMinute.__table__
    existing = session.execute(
        select(table.c.release, table.c.environment, table.c.minute, table.c.segment).where(
            table.c.project_id == project_id,
            tuple_(table.c.release, table.c.environment, table.c.minute).in_(keys),
        )
    ).all()
    gone = [tuple(row) for row in existing if tuple(row) not in by_segment]
    if gone:
        session.execute(
            delete(table).where(
                table.c.project_id == project_id,
                tuple_(table.c.release, table.c.environment, table.c.minute, table.c.segment).in_(gone),
            )
        )
    if not by_segment:
        return
    stmt = upsert_insert(session, SessionSegmentMinute)
    stmt = stmt.on_conflict_do_update(
        index_elements=["project_id", "release", "environment", "minute", "segment"],
        set_={"started": stmt.excluded.started, "errored": stmt.excluded.errored},
    )
    session.execute(
        stmt,
        [
            {
                "project_id": project_id,
                "release": rel,
                "environment": env,
                "minute": minute,
                "segment": segment,
                "started": counts[0],
                "errored": counts[1],
            }
            for (rel, env, minute, segment), counts in by_segment.items()
        ],
    )


def delete_events_before(session: Session, cutoff: datetime) -> int:
    """Retention: raw events older than `cutoff` go; their per-minute counts stay."""
    result = session.execute(delete(Event).where(Event.received_at < cutoff))
    return int(result.rowcount or 0)
