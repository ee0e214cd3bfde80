"""The worker loop: digest intake batches, and run the periodic jobs (detection, alerts, pull).

`detector worker` runs it in its own process (any number of them share one PostgreSQL);
`detector serve` runs one in a thread next to the API on the embedded SQLite default.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.intake.digest import DigestStats, Symbolicator, digest_batch
from detector.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class PeriodicJob:
    """A job the loop runs every `interval` seconds; errors are logged, never stop the loop."""

    name: str
    interval: float
    run: Callable[[], object]
    next_at: float = 0.0


@dataclass
class Worker:
    settings: Settings
    factory: sessionmaker[Session]
    metrics: Metrics
    symbolicate: Symbolicator | None = None
    jobs: list[PeriodicJob] = field(default_factory=list)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def digest_once(self) -> DigestStats:
        stats = digest_batch(
            self.factory, batch_size=self.settings.digest_batch_size, symbolicate=self.symbolicate
        )
        if stats.items:
            self.metrics.digested_events.inc(stats.events)
            self.metrics.digest_lag.set(stats.lag_seconds)
        return stats

    def run_due_jobs(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for job in self.jobs:
            if now < job.next_at:
                continue
            job.next_at = now + job.interval
            try:
                job.run()
            except Exception:  # task boundary: a failing job must not stop digest
                log.exception("worker job %s failed", job.name)

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set; a batch in progress is finished (or rolled back) first."""
        log.info("worker %s started", self.owner)
        while not stop.is_set():
            try:
                stats = self.digest_once()
            except OperationalError as exc:
                log.warning("digest failed, retrying: %s", exc.orig)
                stop.wait(1.0)
                continue
            except Exception:  # task boundary: log and keep serving
                log.exception("digest batch failed")
                stop.wait(1.0)
                continue
            self.run_due_jobs()
            if stats.items < self.settings.digest_batch_size:
                stop.wait(self.settings.digest_interval_seconds)
        log.info("worker %s stopped", self.owner)
