"""What the database can store of an item, checked at intake so that nothing acknowledged fails the digest.

Pure: limits come from the columns the digest writes (`store/models.py`; a test keeps them in step), and
every check names the field it refuses, as relay's answers do.

- NUL characters and unpaired UTF-16 surrogates: PostgreSQL's `text`/`varchar` columns and `jsonb`
  refuse the first, UTF-8 cannot encode the second; an item holding one anywhere (a key or a value) is
  refused, on every database alike.
- Identity columns (release, environment, user, session and trace ids) are refused when longer than
  their column: cutting them would merge distinct releases or users into one.
- Counts go to 32-bit integer columns: a count above `MAX_COUNT` is refused.
"""

from __future__ import annotations

import re
from typing import Any

MAX_RELEASE_CHARS = 250
MAX_ENVIRONMENT_CHARS = 64
MAX_USER_CHARS = 128
MAX_SESSION_ID_CHARS = 64
MAX_TRACE_ID_CHARS = 64
MAX_COUNT = 2**31 - 1
"""The largest value of the 32-bit integer columns (PostgreSQL `integer`) that counts are stored in."""

_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
"""The JSON escapes of NUL and of UTF-16 surrogates (a decoded string keeps only unpaired ones)."""
_SURROGATE = re.compile("[\ud800-\udfff]")


class Unstorable(ValueError):
    """A value the database cannot store; the message names the field."""


def may_hold_unstorable_text(payload: bytes) -> bool:
    """Whether the JSON text `payload` spells a NUL or a surrogate (then `unstorable_text` must look)."""
    return _SUSPECT_ESCAPE.search(payload) is not None


def unstorable_text(payload: bytes, data: Any) -> str | None:
    """Where and what the first string of `data` (the decoded `payload`) holds that no text column stores:
    `"tags.browser contains a NUL character (\\u0000)"`, or None. JSON can only spell these as escapes
    (`\\u0000`, `\\ud800`), so a payload without one in its bytes is answered without walking it."""
    if not may_hold_unstorable_text(payload):
        return None
    found = _find_unstorable(data)
    if found is None:
        return None
    path, text = found
    what = "a NUL character (\\u0000)" if "\x00" in text else "a lone UTF-16 surrogate (half of a pair)"
    return f"{path} contains {what}"


def _unstorable(text: str) -> bool:
    return "\x00" in text or _SURROGATE.search(text) is not None


def _find_unstorable(data: Any) -> tuple[str, str] | None:
    # Iterative, depth first in document order: nesting as deep as the JSON decoder allows cannot recurse.
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _unstorable(value):
                return path or "(the item)", value
        elif isinstance(value, dict):
            children = []
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if _unstorable(key):
                    return f"{name!r} (a key)", key
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
