"""The one JSON decoder for what clients send: request bodies, envelope and item headers, items, cursors.

The standard library's decoder, with its answer to a document nested deeper than the interpreter's
recursion limit (a `RecursionError`, so a 500 wherever it escaped) turned into `NotJson` like any other
refusal. It keeps the standard library's reading of numbers (integers of any size stay exact, so a count
past 32 bits is refused by name later rather than rounded to a float); the hot intake path decodes
events with orjson first and only falls back here for what orjson refuses.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["NotJson", "parse_json"]


class NotJson(ValueError):
    """The text is not a JSON document this server accepts; the message says why and where."""


def parse_json(data: bytes | bytearray | str, what: str) -> Any:
    """The decoded document, or `NotJson("<what> is not valid JSON: <reason>")`."""
    try:
        return json.loads(data)
    except RecursionError:
        raise NotJson(f"{what} is not valid JSON: nested too deeply (depth limit exceeded)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotJson(f"{what} is not valid JSON: {exc}") from None
