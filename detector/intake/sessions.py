"""Parse release-health sessions, the error-rate denominator (https://develop.sentry.dev/sdk/telemetry/sessions/).

Two item types carry them. ``session`` is one update of one user-attended session (a page load in the
browser): the whole current state, sent at start (``init: true``) and again when it changes or ends.
``sessions`` is a batch of already-closed request-mode sessions counted per minute by outcome.

Statuses. ``ok`` is alive; ``exited``, ``crashed``, ``abnormal`` and ``unhandled`` are terminal. ``unhandled``
(relay >= 25.9, @sentry/browser >= 11) splits the old ``crashed``: an unhandled error that did *not* end
the process, which is what every uncaught error in a browser is. We follow that split: an ``unhandled``
session counts as unhealthy (errored) but not as a crash, so crash-free rates are not hit by ordinary
uncaught browser errors while error rates still are. ``errored`` is accepted as relay does (a session that
exited with errors). Whatever the status, ``errors > 0`` makes a session errored, and a ``crashed``,
``unhandled`` or ``errored`` status with ``errors: 0`` counts one error, as the spec tells ingest to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detector.intake.normalize import InvalidEvent, parse_timestamp, parse_user_agent
from detector.intake.storable import (
    MAX_COUNT,
    MAX_ENVIRONMENT_CHARS,
    MAX_RELEASE_CHARS,
    MAX_SESSION_ID_CHARS,
    MAX_USER_CHARS,
    Unstorable,
    check_count,
    check_length,
)
from detector.json_text import NotJson, parse_json

__all__ = [
    "SESSION_STATUSES",
    "InvalidSession",
    "SessionAggregate",
    "SessionUpdate",
    "parse_session_aggregates",
    "parse_session_update",
]

SESSION_STATUSES = frozenset({"ok", "exited", "crashed", "abnormal", "errored", "unhandled"})
_TERMINAL = frozenset({"exited", "crashed", "abnormal", "errored", "unhandled"})
_IMPLIES_ERROR = frozenset({"crashed", "unhandled", "errored"})


class InvalidSession(ValueError):
    """A session or sessions payload that cannot be counted; the message names the field."""


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """One ``session`` item. ``timestamp`` is when this state was reached (UTC, aware)."""

    sid: str | None
    did: str | None
    init: bool
    started: datetime
    timestamp: datetime
    status: str
    errors: int
    release: str
    environment: str
    duration: float | None = None
    user_agent: str | None = None
    """``attrs.user_agent`` (what @sentry/browser sends): gives the session's browser segment."""

    @property
    def is_terminal(self) -> bool:
        """True once the session has ended; no further update of it should follow."""
        return self.status in _TERMINAL

    @property
    def segment(self) -> str | None:
        """Browser family and major version (``"Safari 14"``) from the user agent, named as events'
        ``browser`` is (`parse_user_agent`), so a signature's sessions and the segment's match."""
        return parse_user_agent(self.user_agent)[0] if self.user_agent else None

    @property
    def is_crashed(self) -> bool:
        """True only for a real crash (``crashed``); an ``unhandled`` browser error is not one."""
        return self.status == "crashed"

    @property
    def is_errored(self) -> bool:
        """True when the session saw any error: ``errors > 0`` or an unhealthy status."""
        return self.errors > 0 or self.status in ("crashed", "abnormal", "errored", "unhandled")

    @property
    def health(self) -> str:
        """The one bucket release health counts it in: crashed, abnormal, unhandled, errored or healthy."""
        if self.status in ("crashed", "abnormal", "unhandled"):
            return self.status
        return "errored" if self.is_errored else "healthy"


@dataclass(frozen=True, slots=True)
class SessionAggregate:
    """One group of a ``sessions`` item: closed sessions started in the same minute, counted by outcome.

    ``exited`` counts clean sessions, ``errored`` exited sessions with errors; ``crashed``, ``abnormal`` and
    ``unhandled`` their statuses. ``total`` is their sum.
    """

    started: datetime
    did: str | None
    exited: int
    errored: int
    abnormal: int
    crashed: int
    unhandled: int
    release: str
    environment: str

    @property
    def total(self) -> int:
        return self.exited + self.errored + self.abnormal + self.crashed + self.unhandled


def _load(payload: bytes | str | dict[str, Any], what: str) -> dict[str, Any]:
    if isinstance(payload, bytes | str):
        try:
            payload = parse_json(payload, f"{what} payload")
        except NotJson as exc:
            raise InvalidSession(str(exc)) from None
    if not isinstance(payload, dict):
        raise InvalidSession(f"{what} payload must be a JSON object, got {type(payload).__name__}")
    return payload


def _user_agent(data: dict[str, Any]) -> str | None:
    """``attrs.user_agent`` if it is a non-empty string (relay accepts sessions without one)."""
    attrs = data.get("attrs")
    value = attrs.get("user_agent") if isinstance(attrs, dict) else None
    if not isinstance(value, str):
        return None
    return value.strip()[:512] or None


def _attrs(data: dict[str, Any]) -> tuple[str, str]:
    attrs = data.get("attrs")
    if not isinstance(attrs, dict):
        raise InvalidSession("attrs is missing: it must be an object with a release")
    release = attrs.get("release")
    if not isinstance(release, str) or not release.strip():
        raise InvalidSession("attrs.release is missing: a session without a release cannot be counted")
    environment = attrs.get("environment")
    if not isinstance(environment, str) or not environment.strip():
        environment = "production"
    release, environment = release.strip(), environment.strip()
    _storable(check_length, release, "attrs.release", MAX_RELEASE_CHARS)
    _storable(check_length, environment, "attrs.environment", MAX_ENVIRONMENT_CHARS)
    return release, environment


def _storable(check: Any, *args: Any) -> None:
    """A `detector.intake.storable` check, its refusal as InvalidSession."""
    try:
        check(*args)
    except Unstorable as exc:
        raise InvalidSession(str(exc)) from None


def _date(value: Any, field: str) -> datetime:
    if value is None:
        raise InvalidSession(f"{field} is missing")
    try:
        return parse_timestamp(value, field)
    except InvalidEvent as exc:
        raise InvalidSession(str(exc)) from None


def _count(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSession(f"{field} must be a non-negative integer, got {value!r}")
    _storable(check_count, value, field)
    return value


def _duration(value: Any) -> float | None:
    """Seconds, if a number. One past `MAX_COUNT` (68 years) or not finite is refused: an integer too
    large for a float made the parser raise OverflowError, answered 500."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not (isinstance(value, int) or math.isfinite(value)) or value > MAX_COUNT:
        raise InvalidSession(f"duration must be a finite number of seconds up to {MAX_COUNT}, got {_short(value)}")
    return float(value)


def _short(value: float) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


def _optional_id(value: Any, field: str, limit: int) -> str | None:
    if isinstance(value, str) and value.strip():
        _storable(check_length, value.strip(), field, limit)
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        _storable(check_length, str(value), field, limit)
        return str(value)
    return None


def parse_session_update(
    payload: bytes | str | dict[str, Any], *, received_at: datetime | None = None
) -> SessionUpdate:
    """Parse a ``session`` item payload (bytes, text or an already decoded object).

    Raises :class:`InvalidSession` when ``attrs.release`` is missing, the status is not one of
    :data:`SESSION_STATUSES`, ``errors`` is not a non-negative integer, ``started`` is missing or not a
    date, or ``timestamp`` is not a date or precedes ``started``. A missing ``timestamp`` is ``received_at``
    (or ``started`` when that is not given either).
    """
    data = _load(payload, "session")
    release, environment = _attrs(data)
    status = data.get("status", "ok")
    if status not in SESSION_STATUSES:
        raise InvalidSession(f"status must be one of {', '.join(sorted(SESSION_STATUSES))}, got {status!r}")
    started = _date(data.get("started"), "started")
    raw_timestamp = data.get("timestamp")
    timestamp = _date(raw_timestamp, "timestamp") if raw_timestamp is not None else received_at or started
    if timestamp < started:
        raise InvalidSession(f"timestamp {timestamp.isoformat()} is before started {started.isoformat()}")
    errors = _count(data.get("errors"), "errors")
    if status in _IMPLIES_ERROR and errors == 0:
        errors = 1
    init = data.get("init")
    return SessionUpdate(
        sid=_optional_id(data.get("sid"), "sid", MAX_SESSION_ID_CHARS),
        did=_optional_id(data.get("did"), "did", MAX_USER_CHARS),
        init=init if isinstance(init, bool) else False,
        started=started,
        timestamp=timestamp,
        status=status,
        errors=errors,
        release=release,
        environment=environment,
        duration=_duration(data.get("duration")),
        user_agent=_user_agent(data),
    )


def parse_session_aggregates(payload: bytes | str | dict[str, Any]) -> list[SessionAggregate]:
    """Parse a ``sessions`` item payload into one :class:`SessionAggregate` per group.

    Raises :class:`InvalidSession` when ``attrs.release`` is missing, ``aggregates`` is not a list, a group
    is not an object or lacks a valid ``started``, or a count is not a non-negative integer.
    """
    data = _load(payload, "sessions")
    release, environment = _attrs(data)
    groups = data.get("aggregates")
    if not isinstance(groups, list):
        raise InvalidSession("aggregates must be a list")
    aggregates: list[SessionAggregate] = []
    for index, group in enumerate(groups):
        if not isinstance(group, dict):
            raise InvalidSession(f"aggregates[{index}] must be an object")
        aggregates.append(
            SessionAggregate(
                started=_date(group.get("started"), f"aggregates[{index}].started"),
                did=_optional_id(group.get("did"), f"aggregates[{index}].did", MAX_USER_CHARS),
                exited=_count(group.get("exited"), f"aggregates[{index}].exited"),
                errored=_count(group.get("errored"), f"aggregates[{index}].errored"),
                abnormal=_count(group.get("abnormal"), f"aggregates[{index}].abnormal"),
                crashed=_count(group.get("crashed"), f"aggregates[{index}].crashed"),
                unhandled=_count(group.get("unhandled"), f"aggregates[{index}].unhandled"),
                release=release,
                environment=environment,
            )
        )
    return aggregates
