"""A local stand-in for Sentry's REST API, for tests: the read endpoints pull mode calls.

Usage (from the repository root, so that `tests` is importable):

    from tests.sources.sentry_standin import SentryStandin

    with SentryStandin.from_fixtures(fixtures_dir, page_size=1) as sentry:
        SentryApi(sentry.base_url, sentry.token).get_page(sentry.events_path(), {"full": "true"})

What it serves, by default exactly the documented example responses of
`fixtures/sentry-api/selected_examples.json`:

* `GET /api/0/projects/{org}/{project}/events/`: the example events, newest ``dateCreated`` first:
  the listed event of `listProjectEvents` and the full event of `getProjectEvent` (the same two
  events the issue examples repeat, so they are served once each). ``start``/``end`` filter on
  ``dateCreated`` (both or neither, or 400 ``start and end are both required``, as Sentry answers).
* `GET /api/0/organizations/{org}/releases/`: the release of `listOrganizationReleases`.
* `GET …/releases/{version}/commits/`: the commit of `listOrganizationReleaseCommits`, under each
  release its ``releases[]`` names.
* `GET …/releases/{version}/deploys/`: none by default (the schema's example is null); tests add
  deploys shaped like the documented ``lastDeploy`` object with `add_deploy`.

Pagination is Sentry's: ``page_size`` objects per page, offset cursors ``0:{offset}:0``, and a ``Link``
header with ``rel="previous"`` and ``rel="next"`` entries whose ``results`` says whether that page has
objects. An unreadable ``cursor`` is 400 ``Invalid cursor parameter.``. Requests without
``Authorization: Bearer <token>`` get 401 ``Authentication credentials were not provided.``, a wrong
token 401 ``Invalid token``; an unknown org, project or release 404 ``The requested resource does not
exist``.

Injected faults, consumed one per matching request in order (`path_contains` narrows which requests
match; `skip` lets that many matching requests through before the first of them): `rate_limit` (429
with ``Retry-After``), `outage` (500), `malformed` (200 whose body is truncated JSON, or, with
``shape=True``, a JSON object where a list belongs).
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

EVENTS_LIST = "get /api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/events/"
EVENT_DETAIL = "get /api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/events/{event_id}/"
RELEASES_LIST = "get /api/0/organizations/{organization_id_or_slug}/releases/"
RELEASE_COMMITS = "get /api/0/organizations/{organization_id_or_slug}/releases/{version}/commits/"
RELEASE_DEPLOYS = "get /api/0/organizations/{organization_id_or_slug}/releases/{version}/deploys/"


def example_values(examples: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    """The example response bodies documented for `operation` (lists flattened), deep-copied."""
    values: list[dict[str, Any]] = []
    for example in (examples.get(operation) or {}).values():
        value = example.get("value")
        values.extend(copy.deepcopy(value) if isinstance(value, list) else [copy.deepcopy(value)])
    return [v for v in values if isinstance(v, dict)]


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    status: int


@dataclass
class _Fault:
    kind: str
    path_contains: str
    skip: int
    retry_after: str = "1"
    status: int = 500
    shape: bool = False


class SentryStandin:
    """A Sentry API stand-in on 127.0.0.1 and a free port, serving from a daemon thread."""

    def __init__(
        self,
        *,
        events: list[dict[str, Any]],
        releases: list[dict[str, Any]],
        commits: list[dict[str, Any]],
        token: str = "sntrys_standin_token",
        org: str = "hellboy-meowmeow",
        projects: tuple[str, ...] = ("sentry",),
        page_size: int = 100,
    ) -> None:
        self.token = token
        self.org = org
        self.projects = projects
        self.page_size = page_size
        self.events = list(events)
        self.releases = list(releases)
        self.commits: dict[str, list[dict[str, Any]]] = {}
        for commit in commits:
            for release in commit.get("releases") or []:
                self.commits.setdefault(release["version"], []).append(commit)
        self.deploys: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @classmethod
    def from_fixtures(cls, fixtures_dir: Path, **kwargs: Any) -> SentryStandin:
        """A stand-in serving the documented examples of `fixtures_dir/sentry-api/selected_examples.json`."""
        examples = json.loads((fixtures_dir / "sentry-api" / "selected_examples.json").read_text())
        events: dict[str, dict[str, Any]] = {}
        for event in example_values(examples, EVENTS_LIST) + example_values(examples, EVENT_DETAIL):
            events.setdefault(event["eventID"], event)
        return cls(
            events=list(events.values()),
            releases=example_values(examples, RELEASES_LIST),
            commits=example_values(examples, RELEASE_COMMITS),
            **kwargs,
        )

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SentryStandin:
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="sentry-standin",
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SentryStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def events_path(self, project: str | None = None) -> str:
        return f"/api/0/projects/{self.org}/{project or self.projects[0]}/events/"

    # ---- data and faults ---------------------------------------------------------------------------

    def add_event(self, event: dict[str, Any]) -> None:
        """An event arrives in Sentry (listed from now on, in ``dateCreated`` order)."""
        with self._lock:
            self.events.append(event)

    def add_deploy(self, version: str, deploy: dict[str, Any]) -> None:
        """A deploy of `version` is reported to Sentry; the release's deployCount and lastDeploy follow."""
        with self._lock:
            self.deploys.setdefault(version, []).append(deploy)
            for release in self.releases:
                if release["version"] == version:
                    release["deployCount"] = len(self.deploys[version])
                    release["lastDeploy"] = deploy

    def rate_limit(self, *, retry_after: int | str = 1, times: int = 1, path_contains: str = "", skip: int = 0) -> None:
        for n in range(times):
            self._faults.append(_Fault("rate_limit", path_contains, skip if n == 0 else 0, str(retry_after)))

    def outage(self, *, status: int = 500, times: int = 1, path_contains: str = "", skip: int = 0) -> None:
        for n in range(times):
            self._faults.append(_Fault("outage", path_contains, skip if n == 0 else 0, status=status))

    def malformed(self, *, shape: bool = False, path_contains: str = "", skip: int = 0) -> None:
        self._faults.append(_Fault("malformed", path_contains, skip, shape=shape))

    def requests_to(self, path_contains: str) -> list[RecordedRequest]:
        return [r for r in self.requests if path_contains in r.path]

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_contains in path:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    self._faults.remove(fault)
                    return fault
        return None

    # ---- answering ---------------------------------------------------------------------------------

    def answer(self, path: str, query: dict[str, str], authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for one GET, as Sentry would answer it."""
        if not authorization or not authorization.startswith("Bearer "):
            return _json(401, {"detail": "Authentication credentials were not provided."})
        if authorization.removeprefix("Bearer ").strip() != self.token:
            return _json(401, {"detail": "Invalid token"})
        fault = self._take_fault(path)
        if fault is not None and fault.kind == "rate_limit":
            status, headers, body = _json(429, {"detail": "You are attempting to use this endpoint too frequently."})
            return status, {**headers, "Retry-After": fault.retry_after}, body
        if fault is not None and fault.kind == "outage":
            return _json(fault.status, {"detail": "Internal Error"})
        if fault is not None and fault.kind == "malformed":
            if fault.shape:
                return _json(200, {"detail": "not a list"})
            return 200, {"Content-Type": "application/json"}, b'[{"eventID": "9fac2ceed9344f2bbfdd1fdac'

        parts = [unquote(p) for p in path.strip("/").split("/")]
        not_found = _json(404, {"detail": "The requested resource does not exist"})
        with self._lock:
            if parts[:3] == ["api", "0", "projects"] and len(parts) == 6 and parts[5] == "events":
                if parts[3] != self.org or parts[4] not in self.projects:
                    return not_found
                start, end = query.get("start"), query.get("end")
                if bool(start) != bool(end):
                    return _json(400, {"detail": "start and end are both required"})
                events = sorted(self.events, key=lambda e: _parse_time(e["dateCreated"]), reverse=True)
                if start and end:
                    low, high = _parse_time(start), _parse_time(end)
                    events = [e for e in events if low <= _parse_time(e["dateCreated"]) <= high]
                return self._page(path, query, events)
            if parts[:3] != ["api", "0", "organizations"] or len(parts) < 5 or parts[3] != self.org:
                return not_found
            if len(parts) == 5 and parts[4] == "releases":
                return self._page(path, query, self.releases)
            if len(parts) == 7 and parts[4] == "releases":
                version, what = parts[5], parts[6]
                if all(r["version"] != version for r in self.releases):
                    return not_found
                if what == "commits":
                    return self._page(path, query, self.commits.get(version, []))
                if what == "deploys":
                    return self._page(path, query, self.deploys.get(version, []))
        return not_found

    def _page(
        self, path: str, query: dict[str, str], objects: list[dict[str, Any]]
    ) -> tuple[int, dict[str, str], bytes]:
        cursor = query.get("cursor") or "0:0:0"
        try:
            _value, offset_text, _is_prev = cursor.split(":")
            offset = int(offset_text)
            if offset < 0:
                raise ValueError(cursor)
        except ValueError:
            return _json(400, {"detail": "Invalid cursor parameter."})
        page = objects[offset : offset + self.page_size]
        next_offset = offset + self.page_size
        prev_offset = max(0, offset - self.page_size)

        def link(rel: str, at: int, is_prev: int, results: bool) -> str:
            cur = f"0:{at}:{is_prev}"
            url = f"{self.base_url}{path}?{urlencode({**query, 'cursor': cur})}"
            return f'<{url}>; rel="{rel}"; results="{str(results).lower()}"; cursor="{cur}"'

        links = ", ".join(
            [
                link("previous", prev_offset, 1, offset > 0),
                link("next", next_offset, 0, next_offset < len(objects)),
            ]
        )
        status, headers, body = _json(200, page)
        return status, {**headers, "Link": links}, body


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True


def _handler_for(standin: SentryStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            authorization = self.headers.get("Authorization")
            status, headers, body = standin.answer(split.path, query, authorization)
            with standin._lock:
                standin.requests.append(RecordedRequest("GET", split.path, query, authorization, status))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the per-request stderr lines."""

    return Handler
