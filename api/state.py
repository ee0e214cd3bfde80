"""What one running API process holds: settings, database access, caches, metrics."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.errors import RateLimited
from detector.intake.accept import ProjectKey
from detector.metrics import Metrics
from detector.store.db import database_error_reason, is_transient_database_error, transaction
from detector.store.models import Project
from detector.store.projects import token_scopes
from detector.store.queue import queue_extent
from detector.store.rate_limits import take_from_window
from detector.store.scopes import TokenScope
from detector.store.writer import GroupCommitWriter

log = logging.getLogger(__name__)


@dataclass
class ProjectKeyCache:
    """Project keys and limits by id, refreshed every `ttl` seconds and on a miss."""

    factory: sessionmaker[Session]
    ttl: float = 5.0
    _keys: dict[int, ProjectKey] = field(default_factory=dict)
    _loaded_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _reload(self) -> None:
        with self.factory() as session:
            rows = session.execute(select(Project.id, Project.public_key, Project.rate_limit_per_minute)).all()
        self._keys = {pid: ProjectKey(pid, key, limit) for pid, key, limit in rows}
        self._loaded_at = time.monotonic()

    def get(self, project_id: int) -> ProjectKey | None:
        # Intake asks twice per request: a known, fresh key is read without the lock (the dict is
        # replaced whole on reload, never changed in place, so a reader sees the old one or the new).
        key = self._keys.get(project_id)
        if key is not None and time.monotonic() - self._loaded_at <= self.ttl:
            return key
        with self._lock:
            stale = time.monotonic() - self._loaded_at > self.ttl
            if stale or project_id not in self._keys:
                try:
                    self._reload()
                except DBAPIError as exc:
                    # the database restarting: a key known a moment ago still opens the queue where it is
                    # writable (SQLite's queue file), and the commit, not this lookup, says 503 where it is not
                    if project_id not in self._keys or not is_transient_database_error(exc):
                        raise
                    log.warning(
                        "project keys not reloaded, using those of %.0f s ago: %s",
                        time.monotonic() - self._loaded_at,
                        database_error_reason(exc),
                    )
            return self._keys.get(project_id)


@dataclass
class TokenCache:
    """The scopes of API tokens seen recently, so authenticated requests do not hit the database each time."""

    factory: sessionmaker[Session]
    ttl: float = 30.0
    _scopes: dict[str, tuple[frozenset[TokenScope], float]] = field(default_factory=dict)

    def scopes_of(self, token: str) -> frozenset[TokenScope] | None:
        """The token's scopes; None for an unknown token (never cached, so a new token works at once)."""
        seen = self._scopes.get(token)
        if seen is not None and time.monotonic() - seen[1] < self.ttl:
            return seen[0]
        with self.factory() as session:
            scopes = token_scopes(session, token)
        if scopes is not None:
            self._scopes[token] = (scopes, time.monotonic())
        return scopes


@dataclass
class RateLimiter:
    """A per-project fixed one-minute window, counted in the database (`store.rate_limits`), so all API
    processes and replicas share one limit. Costs one short write per request, only for projects with a
    limit (none by default)."""

    factory: sessionmaker[Session]
    default_per_minute: int

    def limit_for(self, project: ProjectKey) -> int:
        """The project's events per minute; 0 is unlimited."""
        return project.rate_limit_per_minute or self.default_per_minute

    def take(self, project: ProjectKey, n: int, now: datetime | None = None) -> None:
        """Count `n` events, or RateLimited (nothing counted) when they would pass the limit this minute.
        Blocking (a database write): call it off the event loop."""
        limit = self.limit_for(project)
        if limit <= 0 or n == 0:
            return
        ts = (now or datetime.now(UTC)).timestamp()
        minute = int(ts // 60)
        with transaction(self.factory) as session:
            used = take_from_window(session, project_id=project.project_id, minute=minute, n=n, limit=limit)
        if used is None:
            retry = max(1, 60 - int(ts % 60))
            raise RateLimited(
                f"project {project.project_id} is over its limit of {limit} events per minute",
                retry_after=retry,
                categories="error;default",
            )


@dataclass
class QueueBound:
    """Intake's view of the queue's size against its bound (`queue_max_items`, `queue_max_bytes`).

    A thread reads the size from the database every `refresh_seconds` (`store.queue.queue_extent`), so
    every API process sees what all of them queued and what the workers digested. To what it read, this
    process adds its requests in flight and those that finished while it read (some may be in the read
    already: the bound errs towards refusing), so a request is never let in on a stale read of this
    process's own work; other processes' show from their commits on. `take` runs on the event loop and
    never waits for the database."""

    factory: sessionmaker[Session]
    max_items: int
    max_bytes: int
    retry_after: int
    refresh_seconds: float = 0.5
    items: int = 0
    payload_bytes: int = 0
    _in_flight: list[int] = field(default_factory=lambda: [0, 0])  # items, bytes taken and not yet finished
    _finished: list[int] = field(default_factory=lambda: [0, 0])  # items, bytes queued since the read began
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def take(self, items: int, payload_bytes: int) -> None:
        """Count a request's items in, or refuse it (RateLimited, every category) if the queue is past its
        bound. Every `take` that returns is followed by one `finish`."""
        if not items:
            return
        with self._lock:
            if self.items > 0 and (
                self.items + items > self.max_items or self.payload_bytes + payload_bytes > self.max_bytes
            ):
                raise RateLimited(
                    f"the intake queue is full ({self.items} items, {self.payload_bytes / 1048576:.0f} MB; the "
                    f"bound is {self.max_items} items, {self.max_bytes / 1048576:.0f} MB): retry after "
                    f"{self.retry_after} s",
                    retry_after=self.retry_after,
                    categories="",
                    scope="organization",
                )
            self.items += items
            self.payload_bytes += payload_bytes
            self._in_flight[0] += items
            self._in_flight[1] += payload_bytes

    def finish(self, items: int, payload_bytes: int, *, queued: bool) -> None:
        """A request `take` let in is done: its items were queued, or (not `queued`) refused after all."""
        if not items:
            return
        with self._lock:
            self._in_flight[0] -= items
            self._in_flight[1] -= payload_bytes
            if queued:
                self._finished[0] += items
                self._finished[1] += payload_bytes
            else:
                self.items = max(0, self.items - items)
                self.payload_bytes = max(0, self.payload_bytes - payload_bytes)

    def refresh(self) -> None:
        with self._lock:
            self._finished = [0, 0]
        with self.factory() as session:
            extent = queue_extent(session)
        with self._lock:
            self.items = extent.items + self._in_flight[0] + self._finished[0]
            self.payload_bytes = extent.payload_bytes + self._in_flight[1] + self._finished[1]

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="queue-bound", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception as exc:  # the thread's boundary: keep the last size, read again next time
                log.warning("queue size not read: %s", database_error_reason(exc))
            if self._stop.wait(self.refresh_seconds):
                return


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    writer: GroupCommitWriter
    keys: ProjectKeyCache
    tokens: TokenCache
    limiter: RateLimiter
    metrics: Metrics
    queue_bound: QueueBound
