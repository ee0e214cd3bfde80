"""What the database can store of an item, checked at intake so that nothing acknowledged fails the digest.

Pure: limits come from the columns the digest writes (`store/models.py`; a test keeps them in step), and
every check names the field it refuses, as relay's answers do.

- NUL characters: PostgreSQL's `text`/`varchar` columns and `jsonb` refuse them, so an item holding
  one anywhere (a key or a value) is refused, on every database alike.
- Identity columns (release, environment, user, session and trace ids) are refused when longer than
  their column: cutting them would merge distinct releases or users into one.
- Counts go to 32-bit integer columns: a count above `MAX_COUNT` is refused.
"""

from __future__ import annotations

from typing import Any

MAX_RELEASE_CHARS = 250
MAX_ENVIRONMENT_CHARS = 64
MAX_USER_CHARS = 128
MAX_SESSION_ID_CHARS = 64
MAX_TRACE_ID_CHARS = 64
MAX_COUNT = 2**31 - 1
"""The largest value of the 32-bit integer columns (PostgreSQL `integer`) that counts are stored in."""

_NUL_ESCAPE = b"\\u0000"


class Unstorable(ValueError):
    """A value the database cannot store; the message names the field."""


def nul_field(payload: bytes, data: Any) -> str | None:
    """The path (`tags.browser`, `exception.values[0].value`) of the first string in `data` (the decoded
    `payload`) that holds a NUL character, or None. JSON can only spell NUL as an escape, so a payload
    without `\\u0000` in its bytes is answered without walking it."""
    if _NUL_ESCAPE not in payload:
        return None
    return _find_nul(data)


def _find_nul(data: Any) -> str | None:
    # Iterative, depth first in document order: nesting as deep as the JSON decoder allows cannot recurse.
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "(the item)"
        elif isinstance(value, dict):
            children = []
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    return f"{name!r} (a key)"
                children.append((item, name))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{index}]") for index, item in reversed(list(enumerate(value))))
    return None


def check_length(value: str | None, field: str, limit: int) -> None:
    """Refuse `value` when it has more than `limit` characters (the column's length)."""
    if value is not None and len(value) > limit:
        raise Unstorable(f"{field} is {len(value)} characters long, over the limit of {limit}")


def check_count(value: int, field: str) -> None:
    """Refuse a count the 32-bit integer columns cannot hold."""
    if value > MAX_COUNT:
        raise Unstorable(f"{field} is {value}, over the largest storable count {MAX_COUNT}")
