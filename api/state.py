"""What one running API process holds: settings, database access, caches, metrics."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.errors import RateLimited
from detector.intake.accept import ProjectKey
from detector.metrics import Metrics
from detector.store.db import transaction
from detector.store.models import Project
from detector.store.projects import token_scopes
from detector.store.rate_limits import take_from_window
from detector.store.scopes import TokenScope
from detector.store.writer import GroupCommitWriter


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
                self._reload()
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
class AppState:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    writer: GroupCommitWriter
    keys: ProjectKeyCache
    tokens: TokenCache
    limiter: RateLimiter
    metrics: Metrics
