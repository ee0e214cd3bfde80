"""What the intake endpoints do before answering: authenticate, bound, parse, validate.

Pure: the caller hands in the body, the headers and a project lookup, and gets back the rows to
store durably (or a domain exception that `api/errors.py` turns into relay's status codes).
Grouping, fingerprinting and counting happen later, in the digest.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from detector.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge, Unauthorized
from detector.intake.auth import public_key_from_request
from detector.intake.decode import BodyTooLarge, CorruptBody, UnsupportedEncoding, decode_body
from detector.intake.envelope import EnvelopeItem, MalformedEnvelope, parse_envelope
from detector.intake.normalize import InvalidEvent, parse_timestamp, validate_event
from detector.intake.sessions import InvalidSession, parse_session_aggregates, parse_session_update
from detector.intake.storable import may_hold_unstorable_text, unstorable_text
from detector.json_text import NotJson, parse_json
from detector.times import iso_utc

STORED_ITEM_TYPES = frozenset({"event", "session", "sessions"})
"""Item types kept for digest; every other type (transaction, attachment, client_report, ...) is
accepted and skipped, as relay does for the data it does not need."""


@dataclass(frozen=True)
class IntakeLimits:
    max_body_bytes: int
    max_decoded_bytes: int
    max_event_bytes: int
    max_items: int
    max_event_age_seconds: float | None = None
    """Events whose own timestamp is older than this are refused (relay's `max_secs_in_past`)."""


@dataclass(frozen=True)
class ProjectKey:
    project_id: int
    public_key: str
    rate_limit_per_minute: int | None


class AcceptedItem(NamedTuple):
    # NamedTuples, not frozen dataclasses: made once per request, at a third of the cost.
    item_type: str
    event_id: str | None
    payload: bytes


class Accepted(NamedTuple):
    project_id: int
    event_id: str | None
    items: list[AcceptedItem]
    key: ProjectKey
    """The project's key as the request was authenticated against (for its rate limit)."""

    @property
    def error_count(self) -> int:
        return sum(1 for item in self.items if item.item_type == "event")


ProjectLookup = Callable[[int], ProjectKey | None]


def decode_request_body(body: bytes, content_encoding: str | None, limits: IntakeLimits) -> bytes:
    """The body with its `Content-Encoding` undone within the limits (413 past them, 400 if corrupt).

    CPU-bound for a compressed body: the intake endpoint runs it in a thread, then hands the decoded body
    to `accept_envelope`/`accept_store` with `decoded=True`."""
    if len(body) > limits.max_body_bytes:
        raise PayloadTooLarge(f"body of {len(body)} bytes is over the limit of {limits.max_body_bytes}")
    try:
        return decode_body(body, content_encoding, max_size=limits.max_decoded_bytes)
    except BodyTooLarge as exc:
        raise PayloadTooLarge(f"decoded body is over the limit of {limits.max_decoded_bytes} bytes") from exc
    except (CorruptBody, UnsupportedEncoding) as exc:
        raise InvalidInput(str(exc)) from exc


def _authenticate(
    project_id: int,
    lookup: ProjectLookup,
    query: Mapping[str, str],
    auth_header: str | None,
    envelope_dsn: str | None,
) -> ProjectKey:
    key = public_key_from_request(query, auth_header, envelope_dsn)
    if not key:
        raise Unauthorized("missing authorization information: no sentry_key in the query, X-Sentry-Auth or DSN")
    project = lookup(project_id)
    if project is None:
        raise NotFound(f"unknown project {project_id}")
    if key != project.public_key:
        raise Forbidden(f"the key {key[:8]}… is not a key of project {project_id}")
    return project


def _validate_event(payload: bytes, limits: IntakeLimits) -> tuple[str, bytes]:
    """The event's id and the payload to store: the bytes as sent, or with an `event_id` added.

    Only what would make the digest refuse the event is checked here (JSON, an exception or a
    message, the event id, the timestamp: `validate_event`); the digest normalises the rest.
    """
    if len(payload) > limits.max_event_bytes:
        raise PayloadTooLarge(f"event of {len(payload)} bytes is over the limit of {limits.max_event_bytes}")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        # orjson says which: invalid UTF-8 or invalid JSON, and where
        raise InvalidInput(f"event payload is not valid JSON: {exc}") from exc
    _refuse_unstorable_text("event", payload, data)
    if isinstance(data, dict) and not data.get("event_id"):
        data["event_id"] = uuid.uuid4().hex
        payload = orjson.dumps(data)
    try:
        event_id = validate_event(data)
    except InvalidEvent as exc:
        raise InvalidInput(f"invalid event: {exc}") from exc
    if limits.max_event_age_seconds is not None and data.get("timestamp") is not None:
        when = parse_timestamp(data["timestamp"])  # valid: validate_event parsed it
        age = (datetime.now(UTC) - when).total_seconds()
        if age > limits.max_event_age_seconds:
            raise InvalidInput(
                f"event {event_id} is too old: its timestamp {iso_utc(when)} is {age / 86400:.1f} days ago, past "
                f"the limit of {limits.max_event_age_seconds / 86400:g} days (DETECTOR_MAX_EVENT_AGE_DAYS)"
            )
    return event_id, payload


def _refuse_unstorable_text(what: str, payload: bytes, data: object) -> None:
    problem = unstorable_text(payload, data)
    if problem is not None:
        raise InvalidInput(f"invalid {what}: {problem}, which cannot be stored")


def _validate_session(item: EnvelopeItem, limits: IntakeLimits) -> None:
    # a session item is stored and digested as an event is, so it is bounded as one
    if len(item.payload) > limits.max_event_bytes:
        raise PayloadTooLarge(
            f"{item.type} item of {len(item.payload)} bytes is over the limit of {limits.max_event_bytes}"
        )
    try:
        data: object = item.payload
        if may_hold_unstorable_text(item.payload):  # decoded only then (the parsers take decoded JSON too)
            data = parse_json(item.payload, f"{item.type} item payload")
            _refuse_unstorable_text(f"{item.type} item", item.payload, data)
        if item.type == "session":
            parse_session_update(data)  # type: ignore[arg-type]
        else:
            parse_session_aggregates(data)  # type: ignore[arg-type]
    except NotJson as exc:
        raise InvalidInput(f"invalid {item.type} item: {exc}") from exc
    except InvalidSession as exc:
        raise InvalidInput(f"invalid {item.type} item: {exc}") from exc


def accept_envelope(
    *,
    project_id: int,
    body: bytes,
    content_encoding: str | None,
    query: Mapping[str, str],
    auth_header: str | None,
    lookup: ProjectLookup,
    limits: IntakeLimits,
    decoded: bool = False,
) -> Accepted:
    """Validate one envelope request; the result lists the items to store (events and sessions). With
    `decoded`, `body` is what `decode_request_body` made of the request's body."""
    if not decoded:
        body = decode_request_body(body, content_encoding, limits)
    try:
        envelope = parse_envelope(body, max_items=limits.max_items)
    except MalformedEnvelope as exc:
        raise InvalidInput(f"malformed envelope: {exc}") from exc
    dsn = envelope.headers.get("dsn")
    project = _authenticate(project_id, lookup, query, auth_header, dsn if isinstance(dsn, str) else None)
    header_event_id = envelope.headers.get("event_id")
    items: list[AcceptedItem] = []
    event_id = header_event_id if isinstance(header_event_id, str) else None
    for item in envelope.items:
        if item.type not in STORED_ITEM_TYPES:
            continue
        if item.type == "event":
            item_event_id, payload = _validate_event(item.payload, limits)
            if event_id is None:
                event_id = item_event_id
            items.append(AcceptedItem("event", item_event_id, payload))
        else:
            _validate_session(item, limits)
            items.append(AcceptedItem(item.type, None, item.payload))
    return Accepted(project.project_id, event_id, items, project)


def accept_store(
    *,
    project_id: int,
    body: bytes,
    content_encoding: str | None,
    query: Mapping[str, str],
    auth_header: str | None,
    lookup: ProjectLookup,
    limits: IntakeLimits,
    decoded: bool = False,
) -> Accepted:
    """Validate one legacy `/store/` request: the body is a single event (`decoded` as for `accept_envelope`)."""
    if not decoded:
        body = decode_request_body(body, content_encoding, limits)
    project = _authenticate(project_id, lookup, query, auth_header, None)
    event_id, payload = _validate_event(body, limits)
    return Accepted(project.project_id, event_id, [AcceptedItem("event", event_id, payload)], project)
