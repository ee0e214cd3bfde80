"""The values the digest's driver-level statements store are the ones SQLAlchemy's column types would."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from detector.store.types import UTCDateTime, naive_utc, sqlite_utc_text, utc_binder, utc_reader


def sample_times(n: int) -> list[datetime]:
    rng = random.Random(3)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), ZoneInfo("Europe/Berlin")]
    times = [datetime(1, 1, 1, tzinfo=UTC), datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=UTC)]
    for _ in range(n):
        value = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.uniform(-30e9, 200e9))
        if rng.random() < 0.3:
            value = value.replace(microsecond=0)
        times.append(value.astimezone(rng.choice(zones)))
    return times


def test_sqlite_text_is_what_the_column_type_stores() -> None:
    stores = UTCDateTime()._cached_bind_processor(sqlite.dialect())
    assert stores is not None
    for value in sample_times(20_000):
        assert sqlite_utc_text(value) == stores(value)
    assert utc_binder(sqlite.dialect()) is sqlite_utc_text


def test_postgresql_value_is_what_the_column_type_binds() -> None:
    binds = UTCDateTime()._cached_bind_processor(postgresql.dialect())
    for value in sample_times(2_000):
        expected = binds(value) if binds else UTCDateTime().process_bind_param(value, postgresql.dialect())
        assert naive_utc(value) == expected


@pytest.mark.parametrize("convert", [sqlite_utc_text, naive_utc])
def test_naive_times_are_refused_as_the_column_type_refuses_them(convert) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="naive"):
        convert(datetime(2026, 1, 1))


def test_reader_reads_what_the_column_type_reads() -> None:
    read = utc_reader(sqlite.dialect())
    reads = UTCDateTime()._cached_result_processor(sqlite.dialect(), None)
    assert reads is not None
    for value in sample_times(500):
        text = sqlite_utc_text(value)
        assert read(text) == reads(text) and read(text).tzinfo is UTC
