"""Keyset pagination shared by every list: `{"items": [...], "next": cursor | null}`.

A cursor is base64 of the JSON of the last row's sort key. Clients may send anything as one, so each list
decodes its cursor against the one shape it writes (`ID_CURSOR`, `TIME_ID_CURSOR`): a cursor that does
not decode to that shape, with every value in the range its column holds, is a 400 naming the cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError

from detector.errors import InvalidInput
from detector.json_text import NotJson, parse_json
from detector.times import utc_in_range

T = TypeVar("T")

MAX_ROW_ID = 2**63 - 1
"""The largest id a 64-bit key column holds; a cursor past it names no row and cannot be bound."""

RowId = Annotated[int, Field(strict=True, ge=0, le=MAX_ROW_ID)]


def _iso_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 time")
    return datetime.fromisoformat(value)


CursorTime = Annotated[datetime, BeforeValidator(_iso_time), AfterValidator(lambda t: utc_in_range(t, "time"))]

ID_CURSOR: TypeAdapter[int] = TypeAdapter(RowId)
"""The cursor of lists ordered by id alone (signatures, anomalies)."""
TIME_ID_CURSOR: TypeAdapter[tuple[datetime, int]] = TypeAdapter(tuple[CursorTime, RowId])
"""The cursor of lists ordered by a time, then id (deploys)."""


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: TypeAdapter[T]) -> T | None:
    """The sort key a cursor carries, validated against `shape`; None without a cursor."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return shape.validate_python(parse_json(base64.urlsafe_b64decode(padded.encode()), "cursor"))
    except (binascii.Error, ValueError, NotJson, ValidationError) as exc:
        shown = cursor if len(cursor) <= 64 else cursor[:64] + "…"
        raise InvalidInput(f"invalid cursor {shown!r}: send back the `next` of the previous page") from exc


def page(items: list[Any], limit: int, next_value: Any) -> dict[str, Any]:
    """One page; `items` holds up to limit+1 rows fetched, the extra one only signals a next page."""
    has_more = len(items) > limit
    return {"items": items[:limit], "next": encode_cursor(next_value) if has_more else None}
