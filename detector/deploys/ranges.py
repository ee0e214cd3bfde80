"""Which commits a deploy brought, when it happened, and what makes two reports the same deploy.

Pure decisions over plain values; `detector.deploys.service` does the reading and writing.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime

# When the range is unknown (a first deploy with no release commits), take this many commits up to
# the deployed sha: sentry-cli's own default `--initial-depth` for a release without a predecessor.
INITIAL_DEPTH = 20
# Longest range read from git for one deploy (newest kept), so a deploy after months is bounded.
MAX_RANGE_COMMITS = 500


class CommitSource(enum.Enum):
    """Where a deploy's commits come from, in order of preference."""

    EXPLICIT = "explicit"  # the sender listed them (our CLI, our JSON API)
    GIT_RANGE = "git_range"  # previous deploy's sha (or --from) .. this sha, in the linked repository
    RELEASE = "release"  # the release's commits not yet deployed to this environment
    GIT_RECENT = "git_recent"  # the last INITIAL_DEPTH commits up to this sha (first deploy)
    HEAD_ONLY = "head_only"  # just the deployed commit, known from an earlier push
    NONE = "none"


def choose_commit_source(
    *,
    explicit: bool,
    repo_available: bool,
    sha: str | None,
    range_start: str | None,
    release_has_undeployed: bool,
    head_commit_known: bool,
) -> CommitSource:
    """The best available way to know a deploy's commits.

    A git range needs both ends; without a start, the release's own commits (sentry-cli's
    set-commits) are the better answer than an arbitrary window of history.
    """
    if explicit:
        return CommitSource.EXPLICIT
    if repo_available and sha and range_start:
        return CommitSource.GIT_RANGE
    if release_has_undeployed:
        return CommitSource.RELEASE
    if repo_available and sha:
        return CommitSource.GIT_RECENT
    if sha and head_commit_known:
        return CommitSource.HEAD_ONLY
    return CommitSource.NONE


def range_start(from_sha: str | None, previous_deploy_sha: str | None, sha: str | None) -> str | None:
    """The exclusive start of the range: an explicit `from_sha` wins over the previous deploy's sha.

    A previous deploy of the very same sha gives no start (the range would be empty and hide a
    re-deploy's commits behind the earlier one).
    """
    if from_sha:
        return from_sha
    if previous_deploy_sha and sha and _same_sha(previous_deploy_sha, sha):
        return None
    return previous_deploy_sha


def not_yet_deployed(commit_ids: Sequence[int], deployed: Iterable[int]) -> list[int]:
    """`commit_ids` in their order, without those already deployed to the environment."""
    seen = set(deployed)
    return [c for c in commit_ids if c not in seen]


def deployed_at(date_started: datetime | None, date_finished: datetime | None, now: datetime) -> datetime:
    """When the new code started serving: the deploy's finish, else its start, else now."""
    return date_finished or date_started or now


def dedupe_key(
    *,
    sha: str | None,
    date_started: datetime | None,
    date_finished: datetime | None,
    name: str | None,
    url: str | None,
) -> str:
    """What makes two reports of (project, release, environment) the same deploy.

    Retries carry the same times, sha, name and url, so they map to one key. A report without any
    time (our CLI without --finished) is identified by its sha alone: sending it twice records it once.
    """
    parts = [
        (sha or "").lower(),
        date_started.isoformat() if date_started else "",
        date_finished.isoformat() if date_finished else "",
        name or "",
        url or "",
    ]
    return "auto:" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


def _same_sha(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    return a.startswith(b) or b.startswith(a)
