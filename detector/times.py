"""The one way times are written for people and programs: ISO 8601 in UTC with a `Z` (as the API's JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest time any input may name: nothing this detector counts happened before the unix epoch."""
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""The latest: a year short of `datetime.max`, so windows computed around an accepted time stay representable."""


class TimeOutOfRange(ValueError):
    """A time outside `EARLIEST`..`LATEST` once in UTC (its offset may push it past year 1 or 9999)."""


def utc_in_range(value: datetime, what: str) -> datetime:
    """`value` in UTC (a naive value is taken as UTC), or `TimeOutOfRange` naming `what` when it is outside
    `EARLIEST`..`LATEST`: `0001-01-01T00:00:00+05:00` is a valid ISO 8601 time whose UTC form is not a
    datetime at all, so every parser of client times goes through here before any arithmetic."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    else:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise TimeOutOfRange(
                f"{what} {value.isoformat()} is out of range: in UTC it falls before year 1 or after year 9999"
            ) from None
    if not EARLIEST <= value < LATEST:
        raise TimeOutOfRange(
            f"{what} {value.isoformat()} is out of range: times from {EARLIEST.date()} to before {LATEST.date()} "
            "(UTC) are accepted"
        )
    return value


def iso_utc(value: datetime | None) -> str | None:
    """`2026-11-27T15:04:00Z` (microseconds when there are any); a naive value is taken as UTC."""
    if value is None:
        return None
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")


def json_default(value: Any) -> Any:
    """`json.dumps(..., default=json_default)`: datetimes as `iso_utc`, anything else as its text."""
    if isinstance(value, datetime):
        return iso_utc(value)
    return str(value)


def json_ready(value: Any) -> Any:
    """`value` with every datetime inside written as `iso_utc` (what the CLI prints, the API answers the same)."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
