"""The one way times are written for people and programs: ISO 8601 in UTC with a `Z` (as the API's JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


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
