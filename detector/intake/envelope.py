"""Parse Sentry envelopes (https://develop.sentry.dev/sdk/foundations/transport/envelopes/).

An envelope is a JSON header line followed by items; each item is a JSON header line and a payload.
A payload has either an explicit ``length`` in its header (exactly that many bytes follow, then an
optional newline) or an implicit length (everything up to the next newline or the end of the body).
The trailing newline of the last item is optional. This module only splits the body: it does not look
inside payloads, so an event item's JSON is validated later by :mod:`detector.intake.normalize`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from detector.json_text import NotJson, parse_json

__all__ = ["Envelope", "EnvelopeItem", "MalformedEnvelope", "parse_envelope"]


class MalformedEnvelope(ValueError):
    """The body is not a valid envelope; the message names the problem and where it is."""


@dataclass(frozen=True, slots=True)
class EnvelopeItem:
    """One item: its ``type`` (also present in ``headers``), all its headers, and its raw payload."""

    type: str
    headers: dict[str, Any]
    payload: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """The envelope header (``event_id``, ``dsn``, ``sent_at``, ``sdk``, ...) and its items, in order."""

    headers: dict[str, Any]
    items: list[EnvelopeItem] = field(default_factory=list)

    @property
    def event_id(self) -> str | None:
        """The envelope header's ``event_id`` when it is a string, else None."""
        value = self.headers.get("event_id")
        return value if isinstance(value, str) else None

    @property
    def dsn(self) -> str | None:
        """The envelope header's ``dsn`` when it is a string, else None."""
        value = self.headers.get("dsn")
        return value if isinstance(value, str) else None

    def items_of_type(self, *types: str) -> list[EnvelopeItem]:
        """The items whose type is one of ``types``, in envelope order."""
        return [item for item in self.items if item.type in types]


def _parse_header(line: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(line)  # fast; anything it refuses gets `parse_json`'s message below
    except orjson.JSONDecodeError:
        pass
    else:
        if isinstance(value, dict):
            return value
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEnvelope(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = parse_json(text, what)
    except NotJson as exc:
        raise MalformedEnvelope(str(exc)) from None
    if not isinstance(value, dict):
        raise MalformedEnvelope(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def parse_envelope(body: bytes, *, max_items: int = 1000) -> Envelope:
    """Split ``body`` into the envelope header and its items.

    Raises :class:`MalformedEnvelope` for an empty body, a header that is not a UTF-8 JSON object, an item
    header without a string ``type``, a ``length`` that is not a non-negative integer or runs past the end
    of the body, an explicit-length payload followed by something other than a newline, or more than
    ``max_items`` items. Unknown item types are kept: callers pick the types they handle.
    """
    # Intake parses one envelope per request: the lines are cut inline and a header goes straight to
    # orjson, with `_parse_header` (its message naming the problem) only for what orjson refuses or
    # what is not an object. That is half the time of a call per line for a browser's one-event envelope.
    if not body:
        raise MalformedEnvelope("empty body: an envelope starts with a header line")
    size = len(body)
    end = body.find(b"\n")
    if end == -1:
        line, pos = body, size
    else:
        line, pos = body[:end], end + 1
    headers = _parse_header(line, "envelope header")
    items: list[EnvelopeItem] = []
    find = body.find
    loads = orjson.loads
    while pos < size:
        index = len(items)
        end = find(b"\n", pos)
        if end == -1:
            line, pos = body[pos:], size
        else:
            line, pos = body[pos:end], end + 1
        if pos >= size and not line.strip():
            # A blank last line is the optional trailing newline after the last item, not an item.
            break
        if index >= max_items:
            raise MalformedEnvelope(f"too many items: more than {max_items}")
        try:
            item_headers = loads(line)
        except orjson.JSONDecodeError:
            item_headers = None
        if type(item_headers) is not dict:
            item_headers = _parse_header(line, f"item {index} header")
        item_type = item_headers.get("type")
        if not isinstance(item_type, str) or not item_type:
            raise MalformedEnvelope(f"item {index} header has no string 'type'")
        length = item_headers.get("length")
        if length is None:
            end = find(b"\n", pos)
            if end == -1:
                payload, pos = body[pos:], size
            else:
                payload, pos = body[pos:end], end + 1
        else:
            # bool is an int subclass; `"length": true` is a broken header, not a length of 1.
            if isinstance(length, bool) or not isinstance(length, int):
                raise MalformedEnvelope(f"item {index} ({item_type}) length must be an integer, got {length!r}")
            if length < 0:
                raise MalformedEnvelope(f"item {index} ({item_type}) length is negative: {length}")
            end = pos + length
            if end > size:
                raise MalformedEnvelope(
                    f"item {index} ({item_type}) length {length} runs past the end of the body "
                    f"({size - pos} bytes left)"
                )
            payload = body[pos:end]
            pos = end
            if pos < size:
                if body[pos] != 10:  # b"\n"
                    raise MalformedEnvelope(
                        f"item {index} ({item_type}) payload of length {length} is not followed by a newline"
                    )
                pos += 1
        items.append(EnvelopeItem(item_type, item_headers, payload))
    return Envelope(headers, items)
