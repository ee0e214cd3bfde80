"""Refuse, before the database sees it, a value its column cannot hold: one check for every write.

PostgreSQL refuses a string longer than its `VARCHAR(n)` column and an integer outside its column's
range with an error (a 500 for whoever sent it); SQLite stores both as given. `refuse_unstorable_values`
runs before every INSERT and UPDATE that SQLAlchemy compiles (ORM flushes and Core statements alike) and
raises `ValueNotStorable` naming the column, so a client gets a 400 saying which value is too long and
the transaction is rolled back before anything is written, on both databases alike. Statements sent
with `exec_driver_sql` (the digest's hot paths) are not compiled and not checked: what they write was
validated at intake (`detector.intake.storable`).
"""

from __future__ import annotations

import re
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

from sqlalchemy import BigInteger, Engine, Integer, SmallInteger, String, event
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


class ValueNotStorable(DontWrapMixin, InvalidInput):
    """A value longer than its column, or outside its integer range; raised as is through SQLAlchemy."""


_CHECKED: WeakSet[ExecutionContext] = WeakSet()

Bound = tuple[str, str, int]
"""(bind name, column label, limit): a string's most characters, or an integer's bits of magnitude."""

_NUMBERED = re.compile(r"_m?\d+$")
"""The suffix SQLAlchemy numbers a column's binds with (`release_m1` in a multi-row VALUES, `id_1`)."""
_BOUNDS: WeakKeyDictionary[Compiled, tuple[list[Bound], list[Bound]]] = WeakKeyDictionary()


def _base_type(type_: TypeEngine[Any], dialect_name: str) -> TypeEngine[Any]:
    variant = type_._variant_mapping.get(dialect_name) if hasattr(type_, "_variant_mapping") else None
    type_ = variant if variant is not None else type_
    return type_.impl_instance if isinstance(type_, TypeDecorator) else type_


def _bounds_of(compiled: Compiled, dialect_name: str) -> tuple[list[Bound], list[Bound]]:
    """The string and integer binds of a compiled INSERT or UPDATE that have a bound (computed once each)."""
    found = _BOUNDS.get(compiled)
    if found is not None:
        return found
    statement = getattr(compiled, "statement", None)
    table_name = getattr(getattr(statement, "table", None), "name", "?")
    strings: list[Bound] = []
    integers: list[Bound] = []
    for name, bind in getattr(compiled, "binds", {}).items():
        if name.startswith("%("):  # an anonymous bind's own name: the compiled names it again as it renders it
            continue
        type_ = _base_type(bind.type, dialect_name)
        label = f"{table_name}.{_NUMBERED.sub('', name)}"
        if isinstance(type_, String) and type_.length:
            strings.append((name, label, type_.length))
            continue
        for kind, bits in INTEGER_RANGES:
            if isinstance(type_, kind):
                integers.append((name, label, bits))
                break
    found = _BOUNDS[compiled] = (strings, integers)
    return found


def _check(params: dict[str, Any], strings: list[Bound], integers: list[Bound]) -> None:
    for name, label, limit in strings:
        value = params.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise ValueNotStorable(
                f"{label.split('.', 1)[1]} is {len(value)} characters long, over the limit of {limit} "
                f"({label}): {value[:40]!r}…"
            )
    for name, label, bits in integers:
        value = params.get(name)
        if isinstance(value, int) and not -(2**bits) <= value < 2**bits:
            raise ValueNotStorable(
                f"{label.split('.', 1)[1]} is {value}, outside the range its column holds "
                f"({-(2**bits)} to {2**bits - 1}, {label})"
            )


def refuse_unstorable_values(
    conn: Connection, _cursor: Any, statement: str, parameters: Any, context: ExecutionContext | None, _many: bool
) -> None:
    if context is None or not (context.isinsert or context.isupdate):
        return
    compiled = context.compiled
    if compiled is None:
        return
    if context in _CHECKED:  # a many-row INSERT is sent in batches, each with every row's parameters
        return
    strings, integers = _bounds_of(compiled, conn.dialect.name)
    if strings or integers:
        for params in context.compiled_parameters:
            _check(params, strings, integers)
    _CHECKED.add(context)


def install_value_bounds(engine: Engine) -> None:
    """Check every compiled INSERT and UPDATE on `engine` with `refuse_unstorable_values`."""
    event.listen(engine, "before_cursor_execute", refuse_unstorable_values)
