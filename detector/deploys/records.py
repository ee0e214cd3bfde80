"""Commits and changed files as every source reports them, parsed into one shape.

Pure: no database, no git, no HTTP. Parsers raise `InvalidInput` with a message naming the bad field,
so the API answers 400 with it and nothing is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from detector.errors import InvalidInput
from detector.sources.git_repo import CommitInfo
from detector.times import TimeOutOfRange, utc_in_range

CHANGE_TYPES = frozenset({"A", "M", "D", "R"})
_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,64}$")
MAX_MESSAGE_CHARS = 64 * 1024
MAX_COMMITS_PER_REQUEST = 10_000


@dataclass(frozen=True)
class FileRecord:
    """One changed file. `additions`/`deletions`/`patch` are None when the source did not say
    (sentry-cli sends paths only); `old_path` is set for renames."""

    path: str
    change_type: str
    old_path: str | None = None
    additions: int | None = None
    deletions: int | None = None
    patch: str | None = None


@dataclass(frozen=True)
class CommitRecord:
    """A commit as reported. `enriched` is True when `files` carry diffs read from the repository."""

    sha: str
    message: str = ""
    author_name: str = ""
    author_email: str = ""
    timestamp: datetime | None = None
    repository: str = ""
    files: tuple[FileRecord, ...] = field(default_factory=tuple)
    enriched: bool = False


def commit_from_git(info: CommitInfo, *, repository: str = "") -> CommitRecord:
    """A commit read from a local clone: message, author, time, and every file with its hunks."""
    return CommitRecord(
        sha=info.sha,
        message=info.message,
        author_name=info.author_name,
        author_email=info.author_email,
        timestamp=info.timestamp,
        repository=repository,
        files=tuple(
            FileRecord(
                path=f.path,
                change_type=f.change_type,
                old_path=f.old_path,
                additions=f.additions,
                deletions=f.deletions,
                patch=f.patch,
            )
            for f in info.files
        ),
        enriched=True,
    )


def enrich_commit(sent: CommitRecord, local: CommitRecord) -> CommitRecord:
    """`sent` completed from the repository's view of the same commit.

    The repository's files (with diffs and counts) replace the sent paths; sent message, author and
    time are kept when present, since they are what the sender saw.
    """
    return replace(
        sent,
        message=sent.message or local.message,
        author_name=sent.author_name or local.author_name,
        author_email=sent.author_email or local.author_email,
        timestamp=sent.timestamp or local.timestamp,
        files=local.files,
        enriched=True,
    )


# -- parsing ------------------------------------------------------------------------------------------


def parse_timestamp(value: Any, *, name: str) -> datetime | None:
    """A UTC datetime from an ISO 8601 string (a trailing Z, nanoseconds allowed) or unix seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{name}: expected a time, got {value!r}")
    if isinstance(value, int | float):
        try:
            parsed = datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidInput(f"{name}: {value!r} is not a usable unix time") from exc
        return _in_range(parsed, name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name}: expected an ISO 8601 time or unix seconds, got {type(value).__name__}")
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return parse_timestamp(float(text), name=name)
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    # Python parses at most microseconds; sentry-cli sends nanoseconds ("…15:04:21.608110555Z").
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {value!r} is not an ISO 8601 time") from exc
    return _in_range(parsed, name)


def _in_range(value: datetime, name: str) -> datetime:
    try:
        return utc_in_range(value, name)
    except TimeOutOfRange as exc:
        raise InvalidInput(str(exc)) from None


def parse_sha(value: Any, *, name: str) -> str:
    if not isinstance(value, str) or not _SHA_RE.match(value.strip()):
        raise InvalidInput(f"{name}: expected a hexadecimal commit sha, got {value!r}")
    return value.strip().lower()


def _text(value: Any, *, name: str, limit: int = 250) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{name}: expected a string, got {type(value).__name__}")
    return value[:limit]


def _mapping(value: Any, *, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, *, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{name}: expected a list, got {type(value).__name__}")
    if len(value) > MAX_COMMITS_PER_REQUEST:
        raise InvalidInput(f"{name}: at most {MAX_COMMITS_PER_REQUEST} entries per request")
    return value


def _change_type(value: Any, *, name: str) -> str:
    kind = value.upper() if isinstance(value, str) else value
    if kind not in CHANGE_TYPES:
        raise InvalidInput(f"{name}: expected one of A, M, D, R, got {value!r}")
    return str(kind)


def _count(value: Any, *, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name}: expected a non-negative integer, got {value!r}")
    return value


def parse_sentry_commit(data: Any, *, index: int = 0) -> CommitRecord:
    """One entry of `commits[]` in sentry-cli's `PUT …/releases/{version}/` body.

    Fields: `id` (sha), `message`, `author_name`, `author_email`, `timestamp`, `repository`, and
    `patch_set` [{`path`, `type` A/M/D}]: paths only, no diffs.
    """
    where = f"commits[{index}]"
    obj = _mapping(data, name=where)
    files = tuple(
        FileRecord(
            path=_text(_mapping(p, name=f"{where}.patch_set[{i}]").get("path"), name="path", limit=4096)
            or _missing(f"{where}.patch_set[{i}].path"),
            change_type=_change_type(p.get("type", "M"), name=f"{where}.patch_set[{i}].type"),
        )
        for i, p in enumerate(_list(obj.get("patch_set"), name=f"{where}.patch_set"))
    )
    return CommitRecord(
        sha=parse_sha(obj.get("id"), name=f"{where}.id"),
        message=_text(obj.get("message"), name=f"{where}.message", limit=MAX_MESSAGE_CHARS).strip("\n"),
        author_name=_text(obj.get("author_name"), name=f"{where}.author_name"),
        author_email=_text(obj.get("author_email"), name=f"{where}.author_email"),
        timestamp=parse_timestamp(obj.get("timestamp"), name=f"{where}.timestamp"),
        repository=_text(obj.get("repository"), name=f"{where}.repository"),
        files=files,
    )


def parse_api_commit(data: Any, *, index: int = 0) -> CommitRecord:
    """One entry of `commits[]` in our JSON API, the same shape the read API returns:
    `sha`, `message`, `author` {`name`, `email`}, `timestamp`, `repository`, and `files`
    [{`path`, `change_type`, `old_path`?, `additions`?, `deletions`?, `patch`?}]."""
    where = f"commits[{index}]"
    obj = _mapping(data, name=where)
    author = _mapping(obj.get("author") or {}, name=f"{where}.author")
    files: list[FileRecord] = []
    for i, raw in enumerate(_list(obj.get("files"), name=f"{where}.files")):
        fname = f"{where}.files[{i}]"
        f = _mapping(raw, name=fname)
        change = _change_type(f.get("change_type", "M"), name=f"{fname}.change_type")
        old_path = _text(f.get("old_path"), name=f"{fname}.old_path", limit=4096) or None
        if change == "R" and not old_path:
            raise InvalidInput(f"{fname}.old_path: a rename (R) needs the old path")
        patch = f.get("patch")
        files.append(
            FileRecord(
                path=_text(f.get("path"), name=f"{fname}.path", limit=4096) or _missing(f"{fname}.path"),
                change_type=change,
                old_path=old_path if change == "R" else None,
                additions=_count(f.get("additions"), name=f"{fname}.additions"),
                deletions=_count(f.get("deletions"), name=f"{fname}.deletions"),
                patch=_text(patch, name=f"{fname}.patch", limit=1024 * 1024) if patch is not None else None,
            )
        )
    return CommitRecord(
        sha=parse_sha(obj.get("sha"), name=f"{where}.sha"),
        message=_text(obj.get("message"), name=f"{where}.message", limit=MAX_MESSAGE_CHARS).strip("\n"),
        author_name=_text(author.get("name"), name=f"{where}.author.name"),
        author_email=_text(author.get("email"), name=f"{where}.author.email"),
        timestamp=parse_timestamp(obj.get("timestamp"), name=f"{where}.timestamp"),
        repository=_text(obj.get("repository"), name=f"{where}.repository"),
        files=tuple(files),
    )


def parse_commit_list(data: Any, *, shape: str) -> list[CommitRecord]:
    """`commits[]` of a request: `shape` is "sentry" (sentry-cli) or "api" (ours)."""
    parse = parse_sentry_commit if shape == "sentry" else parse_api_commit
    return [parse(item, index=i) for i, item in enumerate(_list(data, name="commits"))]


def _missing(name: str) -> str:
    raise InvalidInput(f"{name} is required")
