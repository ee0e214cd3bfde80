"""Sentry pull mode: the worker pulls events (and releases, deploys, commits) from a Sentry organisation.

For teams that stay on Sentry: instead of pointing their SDKs at us, they give the worker an API token.
Pulled events go through the same door as pushed ones (`detector.store.queue.enqueue_items`, item type
``event``, payload = the SDK-shaped JSON of `sentry_mapping.map_event`), so the digest treats them alike.

Incremental scheme for events (Sentry lists newest first, paginated by offset cursors):

* A *sweep* lists the window ``[start, end]`` page by page (``?full=true&start=…&end=…&cursor=…``).
  ``end`` is frozen when the sweep begins, so events arriving meanwhile cannot shift the offsets the
  stored cursor points at; they are picked up by the next sweep.
* ``start`` is the newest ``dateCreated`` of the previous completed sweeps (the *watermark*) minus an
  overlap window, so events Sentry ingests late (up to the overlap) are not missed. Ids seen in that
  overlap are kept in the cursor's state and skipped, so the overlap does not enqueue duplicates.
* Each page is stored in ONE transaction: its new events are enqueued and the cursor row (next cursor,
  sweep, seen ids) advanced together. A crash before the commit repeats the page; after it, the next
  run continues from the stored cursor. Nothing is lost or enqueued twice; the digest also dedupes by
  ``event_id``.
* The cursor row carries a revision: a write whose revision moved meanwhile (another worker pulled the
  same project) is rolled back, so two workers never store the same page.

Failures never raise out of `pull_project_events`, `pull_project_releases` or `SentryPull.run`: 429
is retried after ``Retry-After`` (bounded by attempts and by a longest wait, past which the project is
skipped until then), 5xx and transport errors with exponential backoff; a refused request (401/403/404),
retries exhausted, or a malformed page ends that project's run, is logged and recorded in the cursor
state's ``last_error``; the next run retries from the last good cursor. Database errors do propagate
(the worker's job boundary logs them).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.deploys.records import CommitRecord
from detector.deploys.service import DeployHook, record_deploy, record_release_commits
from detector.errors import Conflict, InvalidInput, NotFound
from detector.sources.sentry_mapping import (
    MalformedPage,
    SentryCommit,
    SentryDeploy,
    SentryRelease,
    UnmappableEvent,
    map_commit,
    map_deploy,
    map_event,
    map_release,
    page_objects,
    parse_link_header,
    parse_retry_after,
    parse_sentry_datetime,
)
from detector.store.db import transaction
from detector.store.deploys import upsert_release
from detector.store.models import Project, PullCursor
from detector.store.projects import create_project, get_project_by_id, get_project_by_slug
from detector.store.queue import enqueue_items

log = logging.getLogger(__name__)

DEFAULT_OVERLAP = timedelta(minutes=15)
DEFAULT_INITIAL_LOOKBACK = timedelta(days=14)
DEFAULT_MAX_PAGES_PER_RUN = 20
DEFAULT_MAX_RELEASE_PAGES = 3
MAX_SEEN_IDS = 20_000
"""Event ids kept in a cursor's state for overlap dedupe; past it the oldest go (the digest still dedupes)."""


# --- errors ------------------------------------------------------------------------------------------


class SentryPullError(Exception):
    """A pull from Sentry's API did not succeed; the message is meant for the operator."""


class SentryRefused(SentryPullError):
    """Sentry answered with a client error (401 bad token, 403, 404 unknown org/project, 400)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class SentryUnavailable(SentryPullError):
    """5xx answers or transport errors (timeouts included) outlasted the retries."""


class SentryRateLimited(SentryPullError):
    """Sentry asked us to wait longer than we may, or 429s outlasted the retries."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MalformedResponse(SentryPullError):
    """A 200 answer that is not the JSON list Sentry documents."""


class PullConflict(SentryPullError):
    """Another worker advanced this cursor meanwhile; this run's page was rolled back."""


# --- the HTTP client ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on one request: at most `max_attempts` tries; 429 waits ``Retry-After`` up to
    `max_wait_seconds` (longer waits are not slept: `SentryRateLimited` is raised at once); 5xx and
    transport errors wait `base_backoff_seconds` doubling per attempt, at most `max_backoff_seconds`,
    with jitter (a factor in [0.5, 1])."""

    max_attempts: int = 5
    max_wait_seconds: float = 60.0
    base_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0


@dataclass(frozen=True)
class Page:
    """One list page: its objects, and the cursor of the next page (None on the last page)."""

    objects: list[dict[str, Any]]
    next_cursor: str | None


class SentryApi:
    """A small client for Sentry's REST API with a Bearer token, timeouts and bounded retries.

    `sleep`, `clock` and `jitter` are injectable so tests can assert the waits without waiting.
    Redirects are not followed (the token must not travel to another host). Use as a context manager
    or call `close()`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SentryApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _backoff(self, attempt: int) -> float:
        delay = min(self.retry.max_backoff_seconds, self.retry.base_backoff_seconds * 2 ** (attempt - 1))
        return delay * (0.5 + self._jitter() / 2)

    def get_page(self, path: str, params: Mapping[str, str] | None = None) -> Page:
        """GET one list page. Raises `SentryRefused`, `SentryUnavailable`, `SentryRateLimited` or
        `MalformedResponse`; the next cursor comes from the ``Link`` header (None when
        ``results="false"`` or absent)."""
        response = self._get(path, dict(params or {}))
        try:
            body = response.json()
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise MalformedResponse(f"GET {path}: the answer is not JSON: {exc}") from exc
        try:
            objects = page_objects(body)
        except MalformedPage as exc:
            raise MalformedResponse(f"GET {path}: {exc}") from exc
        link = parse_link_header(response.headers.get("Link")).get("next")
        return Page(objects=objects, next_cursor=link.cursor if link and link.results else None)

    def iter_pages(self, path: str, params: Mapping[str, str] | None = None, *, max_pages: int) -> Iterator[Page]:
        """Pages from the first one, following ``next`` cursors, at most `max_pages`."""
        cursor: str | None = None
        for _ in range(max_pages):
            page = self.get_page(path, {**(params or {}), **({"cursor": cursor} if cursor else {})})
            yield page
            cursor = page.next_cursor
            if cursor is None:
                return

    def _get(self, path: str, params: dict[str, str]) -> httpx.Response:
        policy = self.retry
        for attempt in range(1, policy.max_attempts + 1):
            last_try = attempt == policy.max_attempts
            try:
                response = self._client.get(path, params=params)
            except httpx.TransportError as exc:
                if last_try:
                    raise SentryUnavailable(f"GET {path}: {type(exc).__name__}: {exc}") from exc
                self._sleep(self._backoff(attempt))
                continue
            status = response.status_code
            if status == 429:
                wait = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
                wait = self._backoff(attempt) if wait is None else wait
                if wait > policy.max_wait_seconds or last_try:
                    raise SentryRateLimited(
                        f"GET {path}: rate limited by Sentry (Retry-After {wait:g}s)", retry_after=wait
                    )
                log.info("sentry pull: 429 on %s, waiting %.1fs as Retry-After says", path, wait)
                self._sleep(wait)
                continue
            if status >= 500:
                if last_try:
                    raise SentryUnavailable(f"GET {path}: Sentry answered {status} {attempt} times")
                self._sleep(self._backoff(attempt))
                continue
            if status != 200:
                raise SentryRefused(f"GET {path}: Sentry answered {status}: {_detail(response)}", status=status)
            return response
        raise AssertionError("unreachable: the loop returns or raises on its last attempt")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body))[:200] if isinstance(body, dict) else str(body)[:200]


# --- cursor state ------------------------------------------------------------------------------------


def events_cursor_key(org: str, project: str) -> str:
    return f"sentry:{org}:{project}:events"[:250]


@dataclass
class CursorSnapshot:
    """A cursor row as read before a run: what a write must still find to be allowed."""

    key: str
    cursor: str | None
    state: dict[str, Any]

    @property
    def revision(self) -> int:
        return int(self.state.get("revision", 0))


def read_cursor(session: Session, key: str) -> CursorSnapshot:
    """The stored cursor and state for `key` (an empty state if the key was never written)."""
    row = session.get(PullCursor, key)
    if row is None:
        return CursorSnapshot(key=key, cursor=None, state={})
    return CursorSnapshot(key=key, cursor=row.cursor, state=dict(row.state or {}))


def _write_cursor(
    session: Session, expected: CursorSnapshot, cursor: str | None, state: dict[str, Any], now: datetime
) -> CursorSnapshot:
    """Compare-and-set: write `cursor`/`state` only if the row still has `expected`'s revision."""
    new_state = {**state, "revision": expected.revision + 1}
    row = session.get(PullCursor, expected.key, with_for_update=True, populate_existing=True)
    if row is None:
        if expected.revision != 0:
            raise PullConflict(f"cursor {expected.key} disappeared during the run")
        session.add(PullCursor(key=expected.key, cursor=cursor, state=new_state, updated_at=now))
        try:
            session.flush()
        except IntegrityError as exc:
            raise PullConflict(f"cursor {expected.key} was created by another worker") from exc
    else:
        if int((row.state or {}).get("revision", 0)) != expected.revision:
            raise PullConflict(f"cursor {expected.key} was advanced by another worker")
        row.cursor, row.state, row.updated_at = cursor, new_state, now
    return CursorSnapshot(key=expected.key, cursor=cursor, state=new_state)


def record_pull_error(
    factory: sessionmaker[Session],
    key: str,
    message: str,
    now: datetime,
    *,
    retry_not_before: datetime | None = None,
) -> None:
    """Note `message` as the cursor's ``last_error`` (and when to try again, if Sentry said), leaving its
    cursor and sweep as they were so the next run retries from the last good page."""
    noted: dict[str, Any] = {"last_error": message, "last_error_at": _iso(now)}
    if retry_not_before is not None:
        noted["retry_not_before"] = _iso(retry_not_before)
    with transaction(factory) as session:
        row = session.get(PullCursor, key, with_for_update=True)
        if row is None:
            session.add(PullCursor(key=key, cursor=None, state={"revision": 1, **noted}, updated_at=now))
            return
        state = dict(row.state or {})
        state.update(noted, revision=int(state.get("revision", 0)) + 1)
        row.state, row.updated_at = state, now


# --- pulling a project's events ----------------------------------------------------------------------


@dataclass
class PullReport:
    """What one run did for one Sentry project."""

    project: str
    pages: int = 0
    events_stored: int = 0
    events_already_seen: int = 0
    events_unmappable: int = 0
    sweeps_completed: int = 0
    skipped_until: str | None = None
    error: str | None = None
    releases: int = 0
    deploys: int = 0
    deploys_rejected: int = 0
    releases_error: str | None = None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _newest_seen(seen: dict[str, str]) -> dict[str, str]:
    if len(seen) <= MAX_SEEN_IDS:
        return seen
    oldest = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(seen.items(), key=lambda item: parse_sentry_datetime(item[1]) or oldest, reverse=True)
    return dict(ordered[:MAX_SEEN_IDS])


def _seen_worth_keeping(
    seen: dict[str, str],
    *,
    watermark: datetime | None,
    newest: datetime | None,
    overlap: timedelta,
    page_ids: set[str],
) -> dict[str, str]:
    """The ids a later page or sweep may list again, so the state stays near two overlap windows:
    the page in hand's (a late arrival shifts the offsets by a few), those no newer than the watermark
    (the previous sweeps' overlap, listed again at the end of this sweep), and those within the overlap
    below the newest seen (listed again by the next sweep). At most `MAX_SEEN_IDS`, newest kept."""
    newest_known = max(filter(None, (watermark, newest)), default=None)
    low = newest_known - overlap if newest_known else None
    kept = {}
    for event_id, created in seen.items():
        at = parse_sentry_datetime(created)
        if (
            event_id in page_ids
            or at is None
            or (watermark is not None and at <= watermark)
            or (low is not None and at >= low)
        ):
            kept[event_id] = created
    return _newest_seen(kept)


def _begin_sweep(state: dict[str, Any], *, now: datetime, overlap: timedelta, initial_lookback: timedelta) -> None:
    watermark = parse_sentry_datetime(state.get("watermark"))
    start = watermark - overlap if watermark else now - initial_lookback
    state["sweep"] = {"start": _iso(start), "end": _iso(now), "newest": None}


def pull_project_events(
    factory: sessionmaker[Session],
    api: SentryApi,
    *,
    org: str,
    sentry_project: str,
    project_id: int,
    overlap: timedelta = DEFAULT_OVERLAP,
    initial_lookback: timedelta = DEFAULT_INITIAL_LOOKBACK,
    max_pages: int = DEFAULT_MAX_PAGES_PER_RUN,
    deadline: float | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    report: PullReport | None = None,
) -> PullReport:
    """Pull new events of `sentry_project` into our project `project_id`'s intake queue, resuming from
    the stored cursor. At most `max_pages` pages per call, and no new page once `time.monotonic()` has
    passed `deadline` (the worker digests between jobs); a sweep that needs more continues next call.

    API failures are recorded in the cursor state's ``last_error`` and in the returned report, never
    raised; pages stored before the failure stay stored.
    """
    report = report or PullReport(project=sentry_project)
    key = events_cursor_key(org, sentry_project)
    path = f"/api/0/projects/{quote(org, safe='')}/{quote(sentry_project, safe='')}/events/"
    with transaction(factory) as session:
        snapshot = read_cursor(session, key)
    now = clock()
    not_before = parse_sentry_datetime(snapshot.state.get("retry_not_before"))
    if not_before and now < not_before:
        report.skipped_until = _iso(not_before)
        return report

    state = dict(snapshot.state)
    cursor = snapshot.cursor
    if not isinstance(state.get("sweep"), dict):
        _begin_sweep(state, now=now, overlap=overlap, initial_lookback=initial_lookback)
        cursor = None
    try:
        for _ in range(max_pages):
            sweep = state["sweep"]
            params = {"full": "true", "start": sweep["start"], "end": sweep["end"]}
            page = api.get_page(path, {**params, **({"cursor": cursor} if cursor else {})})
            report.pages += 1
            received_at = clock()
            seen: dict[str, str] = dict(state.get("seen") or {})
            page_ids: set[str] = set()
            rows: list[dict[str, object]] = []
            for obj in page.objects:
                try:
                    payload = map_event(obj)
                except UnmappableEvent as exc:
                    log.warning("sentry pull %s/%s: skipping an event: %s", org, sentry_project, exc)
                    report.events_unmappable += 1
                    continue
                event_id, created = str(payload["event_id"]), str(payload["timestamp"])
                page_ids.add(event_id)
                if event_id in seen:
                    report.events_already_seen += 1
                    continue
                seen[event_id] = created
                sweep["newest"] = _later(sweep.get("newest"), created)
                rows.append(
                    {
                        "project_id": project_id,
                        "item_type": "event",
                        "event_id": event_id,
                        "received_at": received_at,
                        "payload": json.dumps(payload, separators=(",", ":")).encode(),
                    }
                )
            cursor = page.next_cursor
            if cursor is None:
                state = _complete_sweep(state, sweep, seen, overlap)
                report.sweeps_completed += 1
            else:
                state["seen"] = _seen_worth_keeping(
                    seen,
                    watermark=parse_sentry_datetime(state.get("watermark")),
                    newest=parse_sentry_datetime(sweep.get("newest")),
                    overlap=overlap,
                    page_ids=page_ids,
                )
            state.update(last_error=None, last_success_at=_iso(received_at))
            state.pop("retry_not_before", None)
            with transaction(factory) as session:
                enqueue_items(session, rows)
                snapshot = _write_cursor(session, snapshot, cursor, state, received_at)
            state = dict(snapshot.state)
            report.events_stored += len(rows)
            if cursor is None or (deadline is not None and time.monotonic() >= deadline):
                break
    except PullConflict as exc:
        log.info("sentry pull %s/%s: %s; leaving it to that worker", org, sentry_project, exc)
        report.error = str(exc)
    except SentryRateLimited as exc:
        report.error = str(exc)
        now = clock()
        until = now + timedelta(seconds=exc.retry_after)
        _record(factory, key, report.error, now, retry_not_before=until)
        report.skipped_until = _iso(until)
    except SentryPullError as exc:
        report.error = str(exc)
        _record(factory, key, report.error, clock())
    return report


def _later(known: str | None, candidate: str) -> str:
    """The later of two API timestamps (`candidate` is known to parse: `map_event` checked it)."""
    known_at, candidate_at = parse_sentry_datetime(known), parse_sentry_datetime(candidate)
    return candidate if known_at is None or (candidate_at is not None and candidate_at > known_at) else str(known)


def _complete_sweep(
    state: dict[str, Any], sweep: dict[str, Any], seen: dict[str, str], overlap: timedelta
) -> dict[str, Any]:
    previous = parse_sentry_datetime(state.get("watermark"))
    newest = parse_sentry_datetime(sweep.get("newest"))
    watermark = max(filter(None, (previous, newest)), default=None)
    done = {k: v for k, v in state.items() if k != "sweep"}
    done["watermark"] = _iso(watermark) if watermark else None
    low = watermark - overlap if watermark else None
    done["seen"] = _newest_seen(
        {
            event_id: created
            for event_id, created in seen.items()
            if low is None or (parse_sentry_datetime(created) or low) >= low
        }
    )
    done["sweeps_completed"] = int(state.get("sweeps_completed", 0)) + 1
    return done


def _record(
    factory: sessionmaker[Session],
    key: str,
    message: str,
    now: datetime,
    retry_not_before: datetime | None = None,
) -> None:
    log.warning("sentry pull %s failed: %s", key, message)
    record_pull_error(factory, key, message, now, retry_not_before=retry_not_before)


# --- pulling a project's releases, commits and deploys ------------------------------------------------


def releases_cursor_key(org: str, project: str) -> str:
    return f"sentry:{org}:{project}:releases"[:250]


def _commit_record(commit: SentryCommit) -> CommitRecord:
    return CommitRecord(
        sha=commit.sha.strip().lower(),
        message=commit.message,
        author_name=commit.author_name,
        author_email=commit.author_email,
        timestamp=commit.timestamp,
        repository=commit.repository,
    )


def _release_fingerprint(release: SentryRelease) -> dict[str, Any]:
    return {"deploys": release.deploy_count, "commits": release.commit_count, "last_deploy": release.last_deploy_id}


def _list_all(
    api: SentryApi, path: str, params: Mapping[str, str] | None = None, *, max_pages: int, what: str
) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    last: Page | None = None
    for last in api.iter_pages(path, params, max_pages=max_pages):
        objects.extend(last.objects)
    if last is not None and last.next_cursor is not None:
        log.warning("sentry pull: %s span more than %d pages; the older ones are left out", what, max_pages)
    return objects


def pull_project_releases(
    factory: sessionmaker[Session],
    api: SentryApi,
    *,
    org: str,
    sentry_project: str,
    project_id: int,
    max_release_pages: int = DEFAULT_MAX_RELEASE_PAGES,
    on_deploy: DeployHook | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    report: PullReport | None = None,
) -> PullReport:
    """Record the releases of `sentry_project` (the org's newest `max_release_pages` pages), their
    commits and their deploys through `detector.deploys.service`, as sentry-cli would have reported them.

    A release's commits and deploys are fetched when it is first seen and again whenever its
    ``commitCount``, ``deployCount`` or ``lastDeploy`` change; each release is stored in one transaction
    together with that knowledge, so a crash repeats at most one release, and `record_deploy` is
    idempotent by Sentry's deploy id anyway. Releases are recorded oldest first and deploys in the order
    they finished, so each deploy's commit range starts where the previous one ended. Failures are
    recorded like `pull_project_events` records them, never raised.
    """
    report = report or PullReport(project=sentry_project)
    key = releases_cursor_key(org, sentry_project)
    with transaction(factory) as session:
        snapshot = read_cursor(session, key)
    state = dict(snapshot.state)
    known: dict[str, Any] = dict(state.get("known") or {})
    org_path = f"/api/0/organizations/{quote(org, safe='')}/releases/"
    try:
        listed = [
            map_release(obj)
            for obj in _list_all(
                api, org_path, {"per_page": "100"}, max_pages=max_release_pages, what=f"{org}'s releases"
            )
        ]
        ours = [r for r in listed if sentry_project in r.project_slugs]
        for release in reversed(ours):  # the API lists newest first
            fingerprint = _release_fingerprint(release)
            if known.get(release.version) == fingerprint:
                continue
            release_path = f"{org_path}{quote(release.version, safe='')}/"
            commits = [map_commit(c) for c in _list_all(api, release_path + "commits/", max_pages=10, what="commits")]
            deploys = [map_deploy(d) for d in _list_all(api, release_path + "deploys/", max_pages=10, what="deploys")]
            deploys.sort(key=lambda d: d.date_finished or d.date_started or datetime.min.replace(tzinfo=UTC))
            known[release.version] = fingerprint
            now = clock()
            with transaction(factory) as session:
                project = get_project_by_id(session, project_id)
                release_row, _ = upsert_release(
                    session,
                    org=project.org,
                    version=release.version,
                    project_ids=[project_id],
                    ref=release.ref,
                    url=release.url,
                    date_released=release.date_released,
                    now=release.date_created or now,
                )
                if commits:
                    # Sentry lists a release's commits newest first, as sentry-cli sent them. They are
                    # the release's commits for every project it is linked to (as sentry-cli's
                    # set-commits), so a release pulled for two projects keeps them for both.
                    record_release_commits(
                        session,
                        release=release_row,
                        commits=[_commit_record(c) for c in commits],
                        newest_first=True,
                    )
                for deploy in deploys:
                    _record_pulled_deploy(session, project, release.version, deploy, on_deploy, now, report)
                state.update(known=known, last_error=None, last_success_at=_iso(now))
                snapshot = _write_cursor(session, snapshot, None, state, now)
            state = dict(snapshot.state)
            report.releases += 1
        listed_versions = {r.version for r in ours}
        if set(known) - listed_versions:
            # Releases past the listed pages only move further back; forgetting them bounds the state.
            now = clock()
            state["known"] = {v: f for v, f in known.items() if v in listed_versions}
            with transaction(factory) as session:
                _write_cursor(session, snapshot, None, state, now)
    except PullConflict as exc:
        log.info("sentry pull %s: %s; leaving it to that worker", key, exc)
        report.releases_error = str(exc)
    except MalformedPage as exc:
        report.releases_error = f"a release page is malformed: {exc}"
        _record(factory, key, report.releases_error, clock())
    except SentryPullError as exc:
        report.releases_error = str(exc)
        _record(factory, key, report.releases_error, clock())
    return report


def _record_pulled_deploy(
    session: Session,
    project: Project,
    version: str,
    deploy: SentryDeploy,
    on_deploy: DeployHook | None,
    now: datetime,
    report: PullReport,
) -> None:
    try:
        record_deploy(
            session,
            project=project,
            release=version,
            environment=deploy.environment,
            date_started=deploy.date_started,
            date_finished=deploy.date_finished,
            name=deploy.name,
            url=deploy.url,
            source="sentry-pull",
            dedupe_key=f"sentry:{deploy.id}" if deploy.id else None,
            on_deploy=on_deploy,
            now=now,
        )
    except InvalidInput as exc:
        # record_deploy validates before it writes: one bad deploy must not block the release forever.
        log.warning("sentry pull: deploy %s of %s not recorded: %s", deploy.id, version, exc)
        report.deploys_rejected += 1
        return
    report.deploys += 1


# --- the periodic job --------------------------------------------------------------------------------


def pull_is_configured(settings: Settings) -> bool:
    """True when the settings name a Sentry URL, token, organisation and at least one project."""
    return bool(
        settings.sentry_pull_base_url
        and settings.sentry_pull_token
        and settings.sentry_pull_org
        and settings.sentry_pull_projects
    )


def ensure_project(factory: sessionmaker[Session], *, slug: str, org: str) -> int:
    """Our project for a pulled Sentry project: the one with the same slug, created on first pull."""
    with transaction(factory) as session:
        try:
            return get_project_by_slug(session, slug).id
        except NotFound:
            pass
    try:
        with transaction(factory) as session:
            return create_project(session, slug=slug, org=org).id
    except Conflict:  # another worker created it meanwhile
        with transaction(factory) as session:
            return get_project_by_slug(session, slug).id


@dataclass
class SentryPull:
    """Everything one pull run needs; `run()` pulls every configured project once."""

    factory: sessionmaker[Session]
    base_url: str
    token: str
    org: str
    projects: list[str]
    local_org: str = "default"
    timeout: float = 10.0
    # The job runs in the worker loop, between digest batches: wait less than a one-off client would.
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=4, max_wait_seconds=15.0))
    overlap: timedelta = DEFAULT_OVERLAP
    initial_lookback: timedelta = DEFAULT_INITIAL_LOOKBACK
    max_pages: int = DEFAULT_MAX_PAGES_PER_RUN
    max_release_pages: int = DEFAULT_MAX_RELEASE_PAGES
    max_seconds_per_run: float = 20.0
    on_deploy: DeployHook | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    @classmethod
    def from_settings(cls, settings: Settings, factory: sessionmaker[Session]) -> SentryPull:
        if not pull_is_configured(settings):
            raise ValueError("Sentry pull mode needs DETECTOR_SENTRY_PULL_BASE_URL, _TOKEN, _ORG and _PROJECTS")
        return cls(
            factory=factory,
            base_url=str(settings.sentry_pull_base_url),
            token=str(settings.sentry_pull_token),
            org=str(settings.sentry_pull_org),
            projects=list(settings.sentry_pull_projects),
            local_org=settings.org,
        )

    def api(self) -> SentryApi:
        return SentryApi(
            self.base_url,
            self.token,
            timeout=self.timeout,
            retry=self.retry,
            sleep=self.sleep,
            clock=self.clock,
        )

    def run(self) -> list[PullReport]:
        """Pull each project's new events, then its releases, commits and deploys; one project's failure
        does not stop the others, nor does a failure of events stop releases (unless Sentry rate-limited us)."""
        reports = []
        deadline = time.monotonic() + self.max_seconds_per_run
        with self.api() as api:
            for slug in self.projects:
                project_id = ensure_project(self.factory, slug=slug, org=self.local_org)
                report = pull_project_events(
                    self.factory,
                    api,
                    org=self.org,
                    sentry_project=slug,
                    project_id=project_id,
                    overlap=self.overlap,
                    initial_lookback=self.initial_lookback,
                    max_pages=self.max_pages,
                    deadline=deadline,
                    clock=self.clock,
                )
                if report.skipped_until is None:
                    # Releases after events (a deploy recorded now sees the events pulled before it),
                    # but not while Sentry asks us to wait.
                    pull_project_releases(
                        self.factory,
                        api,
                        org=self.org,
                        sentry_project=slug,
                        project_id=project_id,
                        max_release_pages=self.max_release_pages,
                        on_deploy=self.on_deploy,
                        clock=self.clock,
                        report=report,
                    )
                reports.append(report)
                log.info(
                    "sentry pull %s/%s: %d pages, %d events stored, %d already seen, %d releases, %d deploys%s",
                    self.org,
                    slug,
                    report.pages,
                    report.events_stored,
                    report.events_already_seen,
                    report.releases,
                    report.deploys,
                    "".join(
                        f", {what}: {err}"
                        for what, err in (("error", report.error), ("releases error", report.releases_error))
                        if err
                    ),
                )
        return reports
