"""Keyset pagination shared by every list: `{"items": [...], "next": cursor | null}`."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from detector.errors import InvalidInput


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"invalid cursor {cursor!r}") from exc


def page(items: list[Any], limit: int, next_value: Any) -> dict[str, Any]:
    """One page; `items` holds up to limit+1 rows fetched, the extra one only signals a next page."""
    has_more = len(items) > limit
    return {"items": items[:limit], "next": encode_cursor(next_value) if has_more else None}
