"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

BigId = BigInteger().with_variant(Integer, "sqlite")
"""An auto-incrementing 64-bit key (SQLite only auto-increments INTEGER PRIMARY KEY)."""

Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, always returns timezone-aware UTC datetimes; refuses naive input."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


def sqlite_utc_text(value: datetime) -> str:
    """What a `UTCDateTime` column stores on SQLite for `value`: the naive UTC time as SQLAlchemy's SQLite
    DATETIME text (`YYYY-MM-DD HH:MM:SS.ffffff`, microseconds always written). The same text as the
    type's bind processors (`process_bind_param`, then DATETIME's `%`-format of a dict), at a fraction
    of their cost: the digest converts a few thousand datetimes per batch on hot paths that bypass them."""
    tzinfo = value.tzinfo
    if tzinfo is not UTC:
        if tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    text = value.replace(tzinfo=None).isoformat(" ")
    return text if value.microsecond else text + ".000000"


def naive_utc(value: datetime) -> datetime:
    """What a `UTCDateTime` column binds on PostgreSQL for `value` (its `process_bind_param`)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None)


def utc_binder(dialect: Dialect) -> Callable[[datetime], Any]:
    """The function that turns an aware datetime into what a `UTCDateTime` column stores on `dialect`, for
    statements sent to the driver directly (`exec_driver_sql`)."""
    if dialect.name == "sqlite":
        return sqlite_utc_text
    if dialect.name == "postgresql":
        return naive_utc
    processor = UTCDateTime()._cached_bind_processor(dialect)
    assert processor is not None
    return processor


def utc_reader(dialect: Dialect) -> Callable[[Any], datetime]:
    """The inverse of `utc_binder`: a stored value (SQLite text, PostgreSQL naive datetime) as an aware UTC
    datetime, as `UTCDateTime` reads it. Memoised: a batch reads few distinct minutes many times."""
    processor = UTCDateTime()._cached_result_processor(dialect, None)
    assert processor is not None
    cache: dict[Any, datetime] = {}

    def read(value: Any) -> datetime:
        try:
            return cache[value]
        except KeyError:
            if len(cache) > 4096:
                cache.clear()
            result = cache[value] = processor(value)
            return result

    return read
