"""The CLI's commands over HTTP (`--url`/`--token`, or DETECTOR_URL/DETECTOR_TOKEN): a CI job needs the
detector's URL and an API token, not its database. Commits are read from the job's own clone and sent with
the deploy, as `sentry-cli releases set-commits --auto` does."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from detector.deploys import ranges
from detector.errors import DetectorError
from detector.sources.git_repo import CommitInfo, GitRepo
from detector.times import iso_utc


class RemoteError(DetectorError):
    """The server refused a request or could not be reached; the message says which, with its answer."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status of the refusal; None when the server could not be reached."""


class Remote:
    """The native API of the detector at `url`, with an API token."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0, http: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.http = http or httpx.Client(base_url=self.url, timeout=timeout)
        self.http.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RemoteError(f"cannot reach the detector at {self.url} (--url / DETECTOR_URL): {exc}") from exc
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail", answer.text)
            except ValueError:
                detail = answer.text[:300]
            raise RemoteError(
                f"{method} {self.url}{path} answered {answer.status_code}: {detail}", status=answer.status_code
            )
        return answer

    def previous_deploy_sha(self, project: str, environment: str) -> str | None:
        page = self._call("GET", f"/api/v1/projects/{project}/deploys", params={"environment": environment, "limit": 1})
        items = page.get("items") or []
        return items[0].get("sha") if items else None

    def record_deploy(
        self,
        *,
        project: str,
        release: str,
        environment: str,
        repo: GitRepo,
        sha: str,
        from_sha: str | None,
        started: datetime | None,
        finished: datetime | None,
    ) -> tuple[dict[str, Any], bool]:
        """Post the deploy with the commits since `from_sha` (or the environment's previous deploy; the last
        `ranges.INITIAL_DEPTH` for a first one), read from `repo`; the deploy as stored, and whether it is new."""
        full_sha = repo.resolve(sha)
        start = repo.resolve(from_sha) if from_sha else self.previous_deploy_sha(project, environment)
        if start is not None and not repo.is_ancestor(start, full_sha):
            start = None  # a rollback or another branch: fall back to the recent history, as the server does
        depth = ranges.MAX_RANGE_COMMITS if start else ranges.INITIAL_DEPTH
        commits = [commit_as_json(c) for c in repo.commits_between(start, full_sha, max_count=depth)]
        body = {
            "release": release,
            "environment": environment,
            "sha": full_sha,
            "started": iso_utc(started),
            "finished": iso_utc(finished),
            "commits": commits,
        }
        answer = self._send("POST", f"/api/v1/projects/{project}/deploys", json=body)
        return answer.json(), answer.status_code == 201

    def release_verdict(
        self,
        *,
        project: str,
        release: str,
        environment: str,
        tolerance: float | None = None,
        min_sessions: int | None = None,
    ) -> dict[str, Any]:
        """The verdict of the release's latest deploy to `environment` (see `api/routes/verdicts.py`)."""
        params: dict[str, Any] = {"environment": environment}
        if tolerance is not None:
            params["tolerance"] = tolerance
        if min_sessions is not None:
            params["min_sessions"] = min_sessions
        path = f"/api/v1/projects/{quote(project, safe='')}/releases/{quote(release, safe='')}/verdict"
        return dict(self._call("GET", path, params=params))

    def detect(self, project: str, at: datetime) -> dict[str, Any]:
        return dict(self._call("POST", f"/api/v1/projects/{project}/detect", params={"at": iso_utc(at)}))


def commit_as_json(commit: CommitInfo) -> dict[str, Any]:
    """A commit read from git in the shape `POST .../deploys` takes (`commits[]`)."""
    return {
        "sha": commit.sha,
        "message": commit.message,
        "author": {"name": commit.author_name, "email": commit.author_email},
        "timestamp": iso_utc(commit.timestamp),
        "files": [
            {
                "path": f.path,
                "change_type": f.change_type,
                "old_path": f.old_path,
                "additions": f.additions,
                "deletions": f.deletions,
                "patch": f.patch,
            }
            for f in commit.files
        ],
    }
