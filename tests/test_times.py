"""`detector.times.utc_in_range`: the one check of client times, by hand-made values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from detector.times import EARLIEST, LATEST, TimeOutOfRange, utc_in_range


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_an_offset_that_pushes_a_time_past_the_calendar_is_refused_by_name(text: str) -> None:
    with pytest.raises(TimeOutOfRange, match=rf"started {text[:19]}.* out of range: in UTC it falls before year 1"):
        utc_in_range(datetime.fromisoformat(text), "started")


@pytest.mark.parametrize("value", [EARLIEST - timedelta(microseconds=1), LATEST, datetime(9999, 12, 31, tzinfo=UTC)])
def test_times_outside_the_accepted_range_are_refused(value: datetime) -> None:
    with pytest.raises(TimeOutOfRange, match="are accepted"):
        utc_in_range(value, "at")


def test_times_in_range_come_back_in_utc() -> None:
    assert utc_in_range(datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))), "at") == datetime(
        2026, 1, 1, tzinfo=UTC
    )
    assert utc_in_range(datetime(2026, 1, 1), "at") == datetime(2026, 1, 1, tzinfo=UTC)
    assert utc_in_range(EARLIEST, "at") == EARLIEST
