"""Refuse, before the database sees it, a value it cannot hold: one check for every compiled statement.

PostgreSQL refuses with an error (a 500 for whoever sent it) a string longer than its `VARCHAR(n)` column,
an integer outside its column's range, and a NUL character in any text, even in a `WHERE`; the driver
cannot encode a lone UTF-16 surrogate; SQLite stores or compares all of these as given.
`refuse_unstorable_values` runs before every statement SQLAlchemy compiles (ORM flushes and Core
statements alike) and raises `ValueNotStorable` naming the column, so a client gets a 400 saying which
value is refused, before anything is written, on both databases alike:

- every statement: a string bind holding a NUL or a lone surrogate, an integer past 64 bits (SQLite's
  driver cannot send it; PostgreSQL refuses it against a `bigint`);
- INSERT and UPDATE: a string longer than its column, an integer outside its column's range, a NUL or a
  lone surrogate anywhere in a JSON value (keys included).

Statements sent with `exec_driver_sql` (the digest's hot paths) are not compiled and not checked: what
they write was validated at intake (`detector.intake.storable`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

from sqlalchemy import JSON, BigInteger, Engine, Integer, SmallInteger, String, event
from sqlalchemy.engine import Connection, ExecutionContext
from sqlalchemy.exc import DontWrapMixin
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.types import TypeDecorator, TypeEngine

from detector.errors import InvalidInput

INTEGER_RANGES: list[tuple[type[TypeEngine[Any]], int]] = [
    (BigInteger, 63),
    (SmallInteger, 15),
    (Integer, 31),
]
"""Bits of magnitude of each integer type on PostgreSQL (subclasses first: BigInteger is an Integer)."""

_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
_NUMBERED = re.compile(r"_m?\d+$")
"""The suffix SQLAlchemy numbers a column's binds with (`release_m1` in a multi-row VALUES, `id_1`)."""


class ValueNotStorable(DontWrapMixin, InvalidInput):
    """A value the database cannot hold or compare; raised as is through SQLAlchemy (not wrapped)."""


@dataclass
class _Binds:
    """The binds of one compiled statement worth checking, as (bind name, label, limit)."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    lengths: list[tuple[str, str, int]] = field(default_factory=list)
    integers: list[tuple[str, str, int]] = field(default_factory=list)
    documents: list[tuple[str, str]] = field(default_factory=list)
    writes: bool = False

    def __bool__(self) -> bool:
        return bool(self.texts or self.lengths or self.integers or self.documents)


_BINDS: WeakKeyDictionary[Compiled, _Binds] = WeakKeyDictionary()
_CHECKED: WeakSet[ExecutionContext] = WeakSet()


def _base_type(type_: TypeEngine[Any], dialect_name: str) -> TypeEngine[Any]:
    variant = type_._variant_mapping.get(dialect_name) if hasattr(type_, "_variant_mapping") else None
    type_ = variant if variant is not None else type_
    return type_.impl_instance if isinstance(type_, TypeDecorator) else type_


def _binds_of(compiled: Compiled, dialect_name: str, writes: bool) -> _Binds:
    """What to check of a compiled statement (worked out once per compiled statement, which SQLAlchemy caches)."""
    found = _BINDS.get(compiled)
    if found is not None:
        return found
    statement = getattr(compiled, "statement", None)
    table = getattr(getattr(statement, "table", None), "name", None)
    binds = _Binds(writes=writes)
    for name, bind in getattr(compiled, "binds", {}).items():
        if name.startswith("%("):  # an anonymous bind's own name: the compiled names it again as it renders it
            continue
        column = _NUMBERED.sub("", name)
        label = f"{table}.{column}" if table else column
        type_ = _base_type(bind.type, dialect_name)
        if isinstance(type_, String):
            binds.texts.append((name, label))
            if writes and type_.length:
                binds.lengths.append((name, label, type_.length))
        elif writes and isinstance(type_, JSON):
            binds.documents.append((name, label))
        elif isinstance(type_, Integer):
            # a write is held to its column's range; a lookup to what either driver can send (64 bits)
            bits = next(bits for kind, bits in INTEGER_RANGES if isinstance(type_, kind)) if writes else 63
            binds.integers.append((name, "id" if column == "pk" else label, bits))  # `session.get` binds `pk_1`
    _BINDS[compiled] = binds
    return binds


def _field(label: str) -> str:
    return label.rsplit(".", 1)[-1]


def _refuse_text(label: str, text: str) -> None:
    what = "a NUL character (\\u0000)" if "\x00" in text else "a lone UTF-16 surrogate (half of a pair)"
    raise ValueNotStorable(f"{_field(label)} contains {what}, which cannot be stored ({label})")


def _check_document(label: str, value: Any) -> None:
    stack = [value]  # iterative: a document as deep as the JSON decoder allows cannot recurse
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE_TEXT.search(item):
                _refuse_text(label, item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _check(params: dict[str, Any], binds: _Binds) -> None:
    for name, label in binds.texts:
        value = params.get(name)
        if isinstance(value, str) and _UNSTORABLE_TEXT.search(value):
            _refuse_text(label, value)
    for name, label, limit in binds.lengths:
        value = params.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise ValueNotStorable(
                f"{_field(label)} is {len(value)} characters long, over the limit of {limit} ({label}): {value[:40]!r}…"
            )
    for name, label, bits in binds.integers:
        value = params.get(name)
        if isinstance(value, int) and not -(2**bits) <= value < 2**bits:
            raise ValueNotStorable(
                f"{_field(label)} is {value}, outside the range of its column ({-(2**bits)} to {2**bits - 1}, {label})"
                if binds.writes
                else f"{_field(label)} is {value}, outside the range of a 64-bit integer, so it names nothing"
            )
    for name, label in binds.documents:
        _check_document(label, params.get(name))


def refuse_unstorable_values(
    conn: Connection, _cursor: Any, statement: str, parameters: Any, context: ExecutionContext | None, _many: bool
) -> None:
    if context is None or context.compiled is None:
        return
    if context in _CHECKED:  # a many-row INSERT is sent in batches, each with every row's parameters
        return
    binds = _binds_of(context.compiled, conn.dialect.name, bool(context.isinsert or context.isupdate))
    if binds:
        for params in context.compiled_parameters:
            _check(params, binds)
    _CHECKED.add(context)


def install_value_bounds(engine: Engine) -> None:
    """Check every compiled statement on `engine` with `refuse_unstorable_values`."""
    event.listen(engine, "before_cursor_execute", refuse_unstorable_values)
