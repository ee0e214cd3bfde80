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
from typing import Any, NamedTuple
from weakref import WeakKeyDictionary

import orjson
from sqlalchemy import (
    Engine,
    Table,
    and_,
    bindparam,
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

from detector.store.dialect import upsert_insert
from detector.store.models import (
    Event,
    SessionAggregate,
    SessionMinute,
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

SignatureMinuteKey = tuple[int, str, str, datetime]
SessionMinuteKey = tuple[str, str, datetime]


def upsert_signatures(session: Session, project_id: int, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Insert new signatures (by hash), widen first/last seen of known ones; returns hash → id."""
    if not rows:
        return {}
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
    for row in inserted:
        by_key.setdefault(row.key, []).append(row)
    new_ids = {row.id for row in inserted}
    connection = session.connection()
    dialect = connection.dialect
    to_db = _EVENTS.c.minute.type._cached_bind_processor(dialect) or (lambda value: value)
    from_db = _EVENTS.c.minute.type._cached_result_processor(dialect, None) or (lambda value: value)
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    seen: dict[str, set[tuple[SignatureMinuteKey, str]]] = {}
    for name, expression in (("user", _USER_SQL), ("session", _SESSION_SQL)):
        seen[name] = set()
        probes = sorted({(row.signature_id, row.minute, getattr(row, name)) for row in inserted})
        for start in range(0, len(probes), 500):
            chunk = probes[start : start + 500]
            # Plain SQL: SQLAlchemy would compile a VALUES list of this size anew for every batch.
            # One index probe per (signature, minute, identity); the batch's own rows are skipped by id.
            sql = (
                "WITH probe (signature_id, minute, identity) AS (VALUES "
                + ", ".join([f"({mark}, {mark}, {mark})"] * len(chunk))
                + ") SELECT e.signature_id, e.release, e.environment, e.minute, e.id, "
                + expression
                + " FROM probe JOIN events e ON e.signature_id = probe.signature_id"
                + " AND e.minute = probe.minute AND "
                + expression
                + " = probe.identity"
            )
            params = tuple(value for sig, minute, ident in chunk for value in (sig, to_db(minute), ident))
            for sig, rel, env, minute, event_pk, value in connection.exec_driver_sql(sql, params):
                if event_pk not in new_ids:
                    seen[name].add(((sig, rel, env, from_db(minute)), value))
    values_ = [
        {
            "project_id": project_id,
            "signature_id": key[0],
            "release": key[1],
            "environment": key[2],
            "minute": key[3],
            "events": len(rows),
            "users": len({r.user for r in rows if (key, r.user) not in seen["user"]}),
            "sessions": len({r.session for r in rows if (key, r.session) not in seen["session"]}),
        }
        for key, rows in sorted(by_key.items())
    ]
    if values_:
        table = SignatureMinute.__table__
        stmt = upsert_insert(session, table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["signature_id", "release", "environment", "minute"],
            set_={
                "events": table.c.events + stmt.excluded.events,
                "users": table.c.users + stmt.excluded.users,
                "sessions": table.c.sessions + stmt.excluded.sessions,
            },
        )
        session.connection().execute(stmt, values_)


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
    per_user: dict[tuple[Any, ...], datetime] = {}
    per_release_user: dict[tuple[Any, ...], datetime] = {}
    per_release: dict[tuple[int, str, str], list[Any]] = {}
    events_per_signature: dict[int, int] = {}
    per_hour: dict[tuple[int, datetime, str, str], int] = {}
    for row in inserted:
        for latest, key in (
            (per_user, (row.signature_id, row.user)),
            (per_release_user, (row.signature_id, row.environment, row.user, row.release)),
        ):
            if key not in latest or row.minute > latest[key]:
                latest[key] = row.minute
        totals = per_release.setdefault((row.signature_id, row.release, row.environment), [0, row.minute, row.minute])
        totals[0] += 1
        totals[1] = min(totals[1], row.minute)
        totals[2] = max(totals[2], row.minute)
        events_per_signature[row.signature_id] = events_per_signature.get(row.signature_id, 0) + 1
        hour_key = (row.signature_id, floor_hour(row.minute), row.release, row.environment)
        per_hour[hour_key] = per_hour.get(hour_key, 0) + 1

    new_users = _record_signature_users(session, project_id, per_user)
    new_release_users, _ = _record_last_minutes(session, _SIGNATURE_RELEASE_USERS, project_id, per_release_user)
    new_per_release: dict[tuple[int, str, str], int] = {}
    for sig, env, _identity, rel in new_release_users:
        new_per_release[(sig, rel, env)] = new_per_release.get((sig, rel, env), 0) + 1
    new_per_signature: dict[int, int] = {}
    for sig, _identity in new_users:
        new_per_signature[sig] = new_per_signature.get(sig, 0) + 1

    releases = _SIGNATURE_RELEASES.c
    upsert = upsert_insert(session, _SIGNATURE_RELEASES)
    upsert = upsert.on_conflict_do_update(
        index_elements=["signature_id", "release", "environment"],
        set_={
            "events": releases.events + upsert.excluded.events,
            "users": releases.users + upsert.excluded.users,
            "first_seen": case(
                (upsert.excluded.first_seen < releases.first_seen, upsert.excluded.first_seen),
                else_=releases.first_seen,
            ),
            "last_seen": case(
                (upsert.excluded.last_seen > releases.last_seen, upsert.excluded.last_seen),
                else_=releases.last_seen,
            ),
        },
    )
    connection.execute(
        upsert,
        [
            {
                "signature_id": key[0],
                "release": key[1],
                "environment": key[2],
                "project_id": project_id,
                "events": n,
                "users": new_per_release.get(key, 0),
                "first_seen": first,
                "last_seen": last,
            }
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
    signatures = Signature.__table__
    connection.execute(
        update(signatures)
        .where(signatures.c.id == bindparam("sig"))
        .values(events=signatures.c.events + bindparam("n"), users=signatures.c.users + bindparam("u")),
        [{"sig": sig, "n": n, "u": new_per_signature.get(sig, 0)} for sig, n in sorted(events_per_signature.items())],
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
    keys = table.primary_key.columns.keys()
    rows = [
        {**dict(zip(keys, key, strict=True)), "project_id": project_id, **dict(zip(columns, amounts, strict=True))}
        for key, amounts in sorted(deltas.items())
        if any(amounts)
    ]
    if not rows:
        return
    stmt = upsert_insert(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={column: table.c[column] + stmt.excluded[column] for column in columns}
    )
    session.connection().execute(stmt, rows)


def _record_signature_users(
    session: Session, project_id: int, latest: dict[tuple[Any, ...], datetime]
) -> set[tuple[Any, ...]]:
    """`_record_last_minutes` for `signature_users`, keeping its histogram by hour of `last_minute`
    (`signature_user_hours`) in step: a user moves from the hour they were last seen in to the new one."""
    inserted, before = _record_last_minutes(session, _SIGNATURE_USERS, project_id, latest)
    deltas: dict[tuple[int, datetime], int] = {}
    for key, minute in latest.items():
        if key in inserted:
            hour = (key[0], floor_hour(minute))
            deltas[hour] = deltas.get(hour, 0) + 1
        elif minute > before[key]:
            old, new = (key[0], floor_hour(before[key])), (key[0], floor_hour(minute))
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
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    row_marks = "(" + ", ".join([mark] * len(columns)) + ")"
    match = " AND ".join(f"t.{name} = probe.{name}" for name in columns)
    rows: list[Any] = []
    for start in range(0, len(keys), 300):
        chunk = keys[start : start + 300]
        sql = (
            f"WITH probe ({', '.join(columns)}) AS (VALUES {', '.join([row_marks] * len(chunk))}) "
            f"SELECT {select_sql} FROM probe JOIN {table.name} t ON {match} {tail}"
        )
        rows += connection.exec_driver_sql(sql, tuple(value for key in chunk for value in key)).all()
    return rows


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
    minute_type = table.c.last_minute.type
    to_db = minute_type._cached_bind_processor(dialect) or (lambda value: value)
    from_db = minute_type._cached_result_processor(dialect, None) or (lambda value: value)
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
    """Set started/errored/crashed of each (release, environment, minute) from session rows and aggregates."""
    key_list = sorted(set(keys))
    for start in range(0, len(key_list), 200):
        chunk = key_list[start : start + 200]
        totals: dict[SessionMinuteKey, list[int]] = {key: [0, 0, 0] for key in chunk}
        states = session.execute(
            select(
                SessionState.release,
                SessionState.environment,
                SessionState.started_minute,
                func.count(),
                func.sum(case((SessionState.errored, 1), else_=0)),
                func.sum(case((SessionState.crashed, 1), else_=0)),
            )
            .where(
                SessionState.project_id == project_id,
                tuple_(SessionState.release, SessionState.environment, SessionState.started_minute).in_(chunk),
            )
            .group_by(SessionState.release, SessionState.environment, SessionState.started_minute)
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
        for rel, env, minute, started, errored, crashed in [*states, *aggregates]:
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


def delete_events_before(session: Session, cutoff: datetime) -> int:
    """Retention: raw events older than `cutoff` go; their per-minute counts stay."""
    result = session.execute(delete(Event).where(Event.received_at < cutoff))
    return int(result.rowcount or 0)
