"""Sentry's REST API answers → the shapes our intake and deploy service take. Pure: no I/O.

`map_event` turns one event as `GET /api/0/projects/{org}/{project}/events/?full=true` lists it into the
payload an SDK would have sent, so pulled events go through exactly the digest that pushed ones do.
Sentry's API spells the event in camelCase and wraps the interfaces in ``entries``; the SDK protocol is
snake_case with top-level interfaces. The frames taken are Sentry's processed ``stacktrace`` (already
resolved through the source maps Sentry holds), not ``rawStacktrace``: in pull mode the source maps live
in Sentry, not here.

The other helpers read the rest of what the pull client meets: the ``Link`` header's cursors, the
``Retry-After`` header, list pages, and release, deploy and commit objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "LinkCursor",
    "MalformedPage",
    "SentryCommit",
    "SentryDeploy",
    "SentryRelease",
    "UnmappableEvent",
    "map_commit",
    "map_deploy",
    "map_event",
    "map_frame",
    "map_release",
    "page_objects",
    "parse_link_header",
    "parse_retry_after",
    "parse_sentry_datetime",
]


class UnmappableEvent(ValueError):
    """One listed event lacks what an event needs (``eventID``, ``dateCreated``); the page is fine."""


class MalformedPage(ValueError):
    """A list page is not what Sentry documents (not a JSON list of objects)."""


# --- small typed accessors: the API's JSON is untrusted ----------------------------------------------


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def parse_sentry_datetime(value: Any) -> datetime | None:
    """A UTC datetime from one of the API's ISO 8601 strings (``2020-06-17T22:26:56.098086Z``), else None."""
    text = _str(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


# --- pages, links, rate limits ----------------------------------------------------------------------


@dataclass(frozen=True)
class LinkCursor:
    """One entry of Sentry's ``Link`` header: ``<url>; rel="next"; results="true"; cursor="0:100:0"``."""

    url: str
    cursor: str
    results: bool


_LINK_ENTRY = re.compile(r"<(?P<url>[^>]*)>(?P<params>(?:\s*;\s*[A-Za-z_]+\s*=\s*\"[^\"]*\")*)")
_LINK_PARAM = re.compile(r";\s*(?P<key>[A-Za-z_]+)\s*=\s*\"(?P<value>[^\"]*)\"")


def parse_link_header(value: str | None) -> dict[str, LinkCursor]:
    """The ``Link`` header's entries by ``rel`` (``previous``, ``next``); entries without a cursor are
    left out.

    >>> links = parse_link_header('<https://s/x?cursor=0:0:1>; rel="previous"; results="false"; '
    ...     'cursor="0:0:1", <https://s/x?cursor=0:100:0>; rel="next"; results="true"; cursor="0:100:0"')
    >>> links["next"].cursor, links["next"].results, links["previous"].results
    ('0:100:0', True, False)
    """
    links: dict[str, LinkCursor] = {}
    for match in _LINK_ENTRY.finditer(value or ""):
        params = {m["key"].lower(): m["value"] for m in _LINK_PARAM.finditer(match["params"])}
        rel, cursor = params.get("rel"), params.get("cursor")
        if rel and cursor is not None:
            links[rel] = LinkCursor(url=match["url"], cursor=cursor, results=params.get("results") == "true")
    return links


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or
    unreadable.

    >>> parse_retry_after("7", now=datetime(2024, 1, 1, tzinfo=UTC))
    7.0
    >>> parse_retry_after("Mon, 01 Jan 2024 00:00:30 GMT", now=datetime(2024, 1, 1, tzinfo=UTC))
    30.0
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable


def page_objects(body: Any) -> list[dict[str, Any]]:
    """The objects of one list page; :class:`MalformedPage` unless ``body`` is a JSON list of objects."""
    if not isinstance(body, list):
        raise MalformedPage(f"expected a JSON list, got {type(body).__name__}")
    for position, item in enumerate(body):
        if not isinstance(item, dict):
            raise MalformedPage(f"item {position} of the page is a {type(item).__name__}, not an object")
    return body


# --- events ------------------------------------------------------------------------------------------


def _context_lines(context: Any, lineno: int | None) -> dict[str, Any]:
    """Sentry's ``context`` ([[lineno, line], ...]) → the SDK's pre_context / context_line / post_context."""
    if lineno is None or not isinstance(context, list):
        return {}
    pre: list[str] = []
    post: list[str] = []
    current: str | None = None
    for pair in context:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            continue
        number, line = pair
        if _int(number) is None or not isinstance(line, str):
            continue
        if number < lineno:
            pre.append(line)
        elif number == lineno:
            current = line
        else:
            post.append(line)
    mapped: dict[str, Any] = {}
    if pre:
        mapped["pre_context"] = pre
    if current is not None:
        mapped["context_line"] = current
    if post:
        mapped["post_context"] = post
    return mapped


def map_frame(frame: Mapping[str, Any]) -> dict[str, Any]:
    """One API frame → one SDK frame: absPath→abs_path, lineNo→lineno, colNo→colno, inApp→in_app, context."""
    lineno = _int(frame.get("lineNo"))
    return _drop_none(
        {
            "filename": _str(frame.get("filename")),
            "abs_path": _str(frame.get("absPath")),
            "function": _str(frame.get("function")),
            "module": _str(frame.get("module")),
            "package": _str(frame.get("package")),
            "platform": _str(frame.get("platform")),
            "lineno": lineno,
            "colno": _int(frame.get("colNo")),
            "in_app": frame.get("inApp") if isinstance(frame.get("inApp"), bool) else None,
            "instruction_addr": _str(frame.get("instructionAddr")),
        }
    ) | _context_lines(frame.get("context"), lineno)


def _stacktrace(value: Any) -> dict[str, Any] | None:
    frames = _obj(value).get("frames")
    if not isinstance(frames, list):
        return None
    return {"frames": [map_frame(f) for f in frames if isinstance(f, dict)]}


def _exception(data: dict[str, Any]) -> dict[str, Any] | None:
    values = data.get("values")
    if not isinstance(values, list):
        return None
    mapped = []
    for value in values:
        if not isinstance(value, dict):
            continue
        mechanism = _obj(value.get("mechanism"))
        mapped.append(
            _drop_none(
                {
                    "type": _str(value.get("type")),
                    "value": _str(value.get("value")),
                    "module": _str(value.get("module")),
                    "thread_id": value.get("threadId"),
                    "mechanism": _drop_none(mechanism) or None,
                    "stacktrace": _stacktrace(value.get("stacktrace")),
                }
            )
        )
    return {"values": mapped} if mapped else None


def _threads(data: dict[str, Any]) -> dict[str, Any] | None:
    values = data.get("values")
    if not isinstance(values, list):
        return None
    mapped = [
        _drop_none(
            {
                "id": thread.get("id"),
                "name": _str(thread.get("name")),
                "crashed": thread.get("crashed") if isinstance(thread.get("crashed"), bool) else None,
                "current": thread.get("current") if isinstance(thread.get("current"), bool) else None,
                "stacktrace": _stacktrace(thread.get("stacktrace")),
            }
        )
        for thread in values
        if isinstance(thread, dict)
    ]
    return {"values": mapped} if mapped else None


def _request(data: dict[str, Any]) -> dict[str, Any] | None:
    request = _drop_none(
        {
            "url": _str(data.get("url")),
            "method": _str(data.get("method")),
            "headers": data.get("headers") if isinstance(data.get("headers"), list | dict) else None,
            "query_string": data.get("query") if isinstance(data.get("query"), list | str) else None,
            "fragment": _str(data.get("fragment")),
        }
    )
    return request or None


def _logentry(data: dict[str, Any]) -> dict[str, Any] | None:
    logentry = _drop_none(
        {
            "formatted": _str(data.get("formatted")),
            "message": _str(data.get("message")),
            "params": data.get("params") if isinstance(data.get("params"), list | dict) else None,
        }
    )
    return logentry or None


def _tags(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items() if v is not None}
    tags: dict[str, str] = {}
    for tag in value if isinstance(value, list) else []:
        if isinstance(tag, dict) and _str(tag.get("key")) and tag.get("value") is not None:
            tags[tag["key"]] = str(tag["value"])
    return tags


def _user(value: Any) -> dict[str, Any] | None:
    user = _obj(value)
    mapped = _drop_none(
        {
            "id": user.get("id") if isinstance(user.get("id"), str | int) else None,
            "email": _str(user.get("email")),
            "username": _str(user.get("username")),
            "ip_address": _str(user.get("ip_address")),
            "name": _str(user.get("name")),
            "data": user.get("data") if isinstance(user.get("data"), dict) else None,
        }
    )
    return mapped or None


def _release_version(event: Mapping[str, Any], tags: dict[str, str]) -> str | None:
    # The full event carries the release as an object; the tag is there whenever the SDK set one.
    release = event.get("release")
    return tags.get("release") or _str(_obj(release).get("version")) or _str(release)


# Sentry promotes these event fields to tags; they travel as fields in the SDK payload, not as tags.
_PROMOTED_TAGS = frozenset({"release", "environment", "level", "dist"})


def map_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The SDK payload for one API event, ready to enqueue as an ``event`` item.

    Keeps what the digest reads: ``event_id`` (from ``eventID``), ``timestamp`` (``dateCreated``), platform,
    level, release and environment (from the tags, else the release object), the exception with its
    frames (or threads / stacktrace / message), user, request (url, method, headers, query), contexts,
    the remaining tags and the SDK. A summary-form event (listed without ``full=true``) has no entries:
    its ``metadata`` type and value stand in for the exception, or its title for the message.

    Raises :class:`UnmappableEvent` when ``eventID`` or ``dateCreated`` is missing or not a string.
    """
    event_id = _str(event.get("eventID"))
    if event_id is None:
        raise UnmappableEvent("event has no eventID")
    timestamp = _str(event.get("dateCreated"))
    if timestamp is None or parse_sentry_datetime(timestamp) is None:
        raise UnmappableEvent(f"event {event_id} has no readable dateCreated")

    tags = _tags(event.get("tags"))
    payload: dict[str, Any] = {
        "event_id": event_id,
        "timestamp": timestamp,
        "platform": _str(event.get("platform")) or "other",
        "level": tags.get("level") or _str(event.get("level")) or "error",
        "release": _release_version(event, tags),
        "environment": tags.get("environment"),
        "dist": tags.get("dist") or _str(event.get("dist")),
        "tags": {k: v for k, v in tags.items() if k not in _PROMOTED_TAGS} or None,
        "user": _user(event.get("user")),
        "contexts": event.get("contexts") if isinstance(event.get("contexts"), dict) else None,
        "sdk": _drop_none(_obj(event.get("sdk"))) or None,
    }
    for entry in event.get("entries") or []:
        if not isinstance(entry, dict):
            continue
        kind, data = entry.get("type"), _obj(entry.get("data"))
        if kind == "exception":
            payload["exception"] = _exception(data)
        elif kind == "threads":
            payload["threads"] = _threads(data)
        elif kind == "stacktrace":
            payload["stacktrace"] = _stacktrace(data)
        elif kind == "message":
            payload["logentry"] = _logentry(data)
        elif kind == "request":
            payload["request"] = _request(data)

    message = _str(event.get("message"))
    if message and not payload.get("logentry"):
        payload["logentry"] = {"formatted": message}
    if not payload.get("exception") and not payload.get("logentry"):
        metadata = _obj(event.get("metadata"))
        if _str(metadata.get("type")):
            payload["exception"] = {
                "values": [_drop_none({"type": metadata["type"], "value": _str(metadata.get("value"))})]
            }
        elif _str(event.get("title")):
            payload["logentry"] = {"formatted": event["title"]}
    return _drop_none(payload)


# --- releases, deploys, commits ----------------------------------------------------------------------


@dataclass(frozen=True)
class SentryRelease:
    """A release as the org's release list shows it; counts tell the client whether to fetch more."""

    version: str
    ref: str | None
    url: str | None
    date_created: datetime | None
    date_released: datetime | None
    project_slugs: tuple[str, ...]
    deploy_count: int | None
    commit_count: int | None
    last_deploy_id: str | None


@dataclass(frozen=True)
class SentryDeploy:
    id: str | None
    environment: str
    name: str | None
    url: str | None
    date_started: datetime | None
    date_finished: datetime | None


@dataclass(frozen=True)
class SentryCommit:
    sha: str
    message: str
    timestamp: datetime | None
    repository: str
    author_name: str
    author_email: str


def map_release(release: Mapping[str, Any]) -> SentryRelease:
    """One object of ``GET /organizations/{org}/releases/``; :class:`MalformedPage` without a version."""
    version = _str(release.get("version"))
    if version is None:
        raise MalformedPage("a release has no version")
    projects = release.get("projects")
    slugs = (
        tuple(p["slug"] for p in projects if isinstance(p, dict) and _str(p.get("slug")))
        if isinstance(projects, list)
        else ()
    )
    last_deploy = _obj(release.get("lastDeploy"))
    last_deploy_id = last_deploy.get("id")
    return SentryRelease(
        version=version,
        ref=_str(release.get("ref")),
        url=_str(release.get("url")),
        date_created=parse_sentry_datetime(release.get("dateCreated")),
        date_released=parse_sentry_datetime(release.get("dateReleased")),
        project_slugs=slugs,
        deploy_count=_int(release.get("deployCount")),
        commit_count=_int(release.get("commitCount")),
        last_deploy_id=str(last_deploy_id) if isinstance(last_deploy_id, str | int) else None,
    )


def map_deploy(deploy: Mapping[str, Any]) -> SentryDeploy:
    """One object of ``GET …/releases/{version}/deploys/``; :class:`MalformedPage` without an environment."""
    environment = _str(deploy.get("environment"))
    if environment is None:
        raise MalformedPage("a deploy has no environment")
    deploy_id = deploy.get("id")
    return SentryDeploy(
        id=str(deploy_id) if isinstance(deploy_id, str | int) else None,
        environment=environment,
        name=_str(deploy.get("name")),
        url=_str(deploy.get("url")),
        date_started=parse_sentry_datetime(deploy.get("dateStarted")),
        date_finished=parse_sentry_datetime(deploy.get("dateFinished")),
    )


def map_commit(commit: Mapping[str, Any]) -> SentryCommit:
    """One object of ``GET …/releases/{version}/commits/``; :class:`MalformedPage` without an id (the sha)."""
    sha = _str(commit.get("id"))
    if sha is None:
        raise MalformedPage("a commit has no id")
    author = _obj(commit.get("author"))
    repository = _obj(commit.get("repository"))
    return SentryCommit(
        sha=sha,
        message=_str(commit.get("message")) or "",
        timestamp=parse_sentry_datetime(commit.get("dateCreated")),
        repository=_str(repository.get("name")) or "",
        author_name=_str(author.get("name")) or "",
        author_email=_str(author.get("email")) or "",
    )
