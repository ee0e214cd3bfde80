"""GitHub webhooks: signature check and the parts of `deployment_status` and `push` we use.

Pure: bytes and dicts in, values out. The route (`api/routes/webhooks.py`) does the I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detector.deploys.records import CommitRecord, FileRecord, parse_timestamp
from detector.errors import InvalidInput

SIGNATURE_PREFIX = "sha256="
ZERO_SHA = "0" * 40


def signature_for(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body` signed with `secret`."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | None, body: bytes, header: str | None) -> bool:
    """True when `header` is the HMAC-SHA256 of the raw `body` with `secret` (constant-time compare).

    A missing secret or header never verifies.
    """
    if not secret or not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(signature_for(secret, body).encode(), header.strip().encode())


@dataclass(frozen=True)
class GithubDeployment:
    """A `deployment_status` event, reduced to what a deploy needs.

    `release` is `deployment.payload.release` when the workflow set it (so it can match the
    release the SDK reports), else the deployed sha: a ref such as "main" names no single build.
    """

    deployment_id: int
    state: str
    sha: str
    ref: str
    release: str
    environment: str
    started: datetime | None
    finished: datetime | None
    url: str | None
    task: str


def parse_deployment_status(payload: Mapping[str, Any]) -> GithubDeployment:
    status = _obj(payload.get("deployment_status"), "deployment_status")
    deployment = _obj(payload.get("deployment"), "deployment")
    sha = deployment.get("sha")
    if not isinstance(sha, str) or not sha:
        raise InvalidInput("deployment.sha is required")
    release = sha
    extra = deployment.get("payload")
    if isinstance(extra, Mapping) and isinstance(extra.get("release"), str) and extra["release"].strip():
        release = extra["release"].strip()
    environment = status.get("environment") or deployment.get("environment")
    if not isinstance(environment, str) or not environment:
        raise InvalidInput("deployment.environment is required")
    url = status.get("environment_url") or status.get("target_url") or status.get("log_url") or None
    deployment_id = deployment.get("id")
    if not isinstance(deployment_id, int):
        raise InvalidInput("deployment.id is required")
    return GithubDeployment(
        deployment_id=deployment_id,
        state=str(status.get("state") or ""),
        sha=sha.lower(),
        ref=str(deployment.get("ref") or ""),
        release=release,
        environment=environment,
        started=parse_timestamp(deployment.get("created_at"), name="deployment.created_at"),
        finished=parse_timestamp(
            status.get("created_at") or status.get("updated_at"), name="deployment_status.created_at"
        ),
        url=url if isinstance(url, str) else None,
        task=str(deployment.get("task") or "deploy"),
    )


def parse_push(payload: Mapping[str, Any]) -> list[CommitRecord]:
    """The commits a branch push brought, oldest first, with their changed paths (no diffs).

    Tag pushes and branch deletions bring no commits.
    """
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/") or payload.get("after") == ZERO_SHA:
        return []
    repository = _obj(payload.get("repository") or {}, "repository").get("full_name") or ""
    commits = payload.get("commits") or []
    if not isinstance(commits, list):
        raise InvalidInput("commits: expected a list")
    return [_push_commit(_obj(c, f"commits[{i}]"), str(repository)) for i, c in enumerate(commits)]


def _push_commit(commit: Mapping[str, Any], repository: str) -> CommitRecord:
    sha = commit.get("id")
    if not isinstance(sha, str) or not sha:
        raise InvalidInput("commits[].id is required")
    author = commit.get("author") if isinstance(commit.get("author"), Mapping) else {}
    files = [
        FileRecord(path=path, change_type=kind)
        for key, kind in (("added", "A"), ("removed", "D"), ("modified", "M"))
        for path in commit.get(key) or []
        if isinstance(path, str) and path
    ]
    return CommitRecord(
        sha=sha.lower(),
        message=str(commit.get("message") or "").strip("\n"),
        author_name=str(author.get("name") or ""),
        author_email=str(author.get("email") or ""),
        timestamp=parse_timestamp(commit.get("timestamp"), name="commits[].timestamp"),
        repository=repository,
        files=tuple(files),
    )


def _obj(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{name}: expected an object")
    return value
