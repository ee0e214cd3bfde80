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
from datetime import UTC, datetime

from sqlalchemy import Engine, event, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.intake.digest import DigestStats, Symbolicator, digest_batch
from detector.metrics import Metrics
from detector.store import dead_letters, queue
from detector.store.db import WalCheckpointer, is_transient_database_error, transaction
from detector.store.leases import beat_worker, forget_worker
from detector.store.models import RawItem

log = logging.getLogger(__name__)

COMPACT_EVERY_SECONDS = 60.0
"""The least time between two compactions of the queue after a drain (`Worker.compact_queue_after_drain`)."""


def is_transient(exc: BaseException) -> bool:
    """Whether a digest failure is the database's state (`store.db.is_transient_database_error`), retried as
    it is; any other failure is an item's, counted against it."""
    return is_transient_database_error(exc)


def _reason(exc: BaseException) -> str:
    """`Type: message` of the driver's error where there is one (SQLAlchemy's own repeats the statement)."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return f"{type(cause).__name__}: {cause}"


class Heartbeat:
    """A worker's heartbeat in the database (`store.leases.beat_worker`), every `interval` seconds from a
    thread of its own: a long detection pass or batch does not make the worker look gone (a stuck loop
    shows as the queue's age in `/healthz` instead). Stopping it deletes the heartbeat."""

    def __init__(self, factory: sessionmaker[Session], owner: str, *, interval: float, alive_for: float) -> None:
        self.factory = factory
        self.owner = owner
        self.interval = interval
        self.alive_for = alive_for
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        with transaction(self.factory) as session:
            beat_worker(session, self.owner, now=datetime.now(UTC), alive_for=self.alive_for)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        try:
            with transaction(self.factory) as session:
                forget_worker(session, self.owner)
        except Exception as exc:  # stopping: the heartbeat runs out by itself
            log.warning("could not delete the heartbeat of worker %s: %s", self.owner, exc)

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # the thread's boundary: the next beat retries
                log.warning("worker %s: heartbeat failed: %s", self.owner, exc)
            if self._stop.wait(self.interval):
                return


@dataclass
class PeriodicJob:
    """A job the loop runs every `interval` seconds; errors are logged, never stop the loop."""

    name: str
    interval: float
    run: Callable[[], object]
    next_at: float = 0.0


_DML = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class WriteLockClock:
    """Times how long a digest batch holds SQLite's write lock: from its first write statement (pysqlite
    begins the transaction, DEFERRED, right before the first INSERT/UPDATE/DELETE/REPLACE, and that
    statement takes the lock) until `digest_batch` returns, committed. Only statements of the thread that
    armed it count (`serve --worker-mode thread` shares the engine with the API)."""

    def __init__(self, engine: Engine) -> None:
        self._thread: int | None = None
        self._first_write: float | None = None
        event.listen(engine, "before_cursor_execute", self._before_execute)

    def _before_execute(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if (
            self._thread is not None
            and self._first_write is None
            and threading.get_ident() == self._thread
            and statement.lstrip()[:7].upper().startswith(_DML)
        ):
            self._first_write = time.perf_counter()

    def arm(self) -> None:
        self._first_write = None
        self._thread = threading.get_ident()

    def held(self) -> float:
        """Seconds from the first write since `arm()` until now (0 if nothing was written); disarms."""
        first, self._thread = self._first_write, None
        return time.perf_counter() - first if first is not None else 0.0


def _run_in_background(job: PeriodicJob, stop: threading.Event) -> None:
    """`job` every `job.interval` seconds (from the end of one run to the start of the next) until `stop`."""
    while not stop.is_set():
        try:
            job.run()
        except Exception:  # the thread's boundary: log, and try again next interval
            log.exception("worker job %s failed", job.name)
        stop.wait(job.interval)


@dataclass
class Worker:
    settings: Settings
    factory: sessionmaker[Session]
    metrics: Metrics
    symbolicate: Symbolicator | None = None
    jobs: list[PeriodicJob] = field(default_factory=list)
    background_jobs: list[PeriodicJob] = field(default_factory=list)
    """Jobs that run in a thread each, beside the loop: outbound calls that may hang until their timeout."""
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    batch_size: int = field(init=False)  # the batch the next `digest_once` claims
    _lock_clock: WriteLockClock | None = field(init=False, default=None)
    _checkpointer: WalCheckpointer | None = field(init=False, default=None)
    _hold_per_item: float = field(init=False, default=0.0)
    _digested_since_compact: int = field(init=False, default=0)
    _compacted_at: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.batch_size = self.settings.digest_batch_size
        engine = self.factory.kw.get("bind")
        if self.settings.digest_lock_target_ms > 0 and isinstance(engine, Engine) and engine.dialect.name == "sqlite":
            self._lock_clock = WriteLockClock(engine)
        if isinstance(engine, Engine) and engine.dialect.name == "sqlite":
            self._checkpointer = WalCheckpointer(engine)

    def digest_once(self) -> DigestStats:
        """Digest one batch. A batch that fails for any reason but a database it cannot reach (a value the
        database refuses, a payload the digest trips on) is digested again item by item, so that one
        poison item is set aside, and after `queue.MAX_ATTEMPTS` moved to the dead letters, instead of
        blocking the queue for every worker."""
        clock = self._lock_clock
        if clock is not None:
            clock.arm()
        try:
            stats = digest_batch(
                self.factory,
                batch_size=self.batch_size,
                max_bytes=self.settings.digest_batch_bytes,
                symbolicate=self.symbolicate,
            )
        except Exception as exc:  # the batch's boundary: transient failures go up, the rest item by item
            if is_transient(exc):
                raise
            log.warning("digest batch failed (%s); digesting item by item", _reason(exc))
            stats = self._digest_item_by_item()
        else:
            if clock is not None:
                self._size_next_batch(stats.items, clock.held())
        if stats.items:
            self.metrics.digested_events.inc(stats.events)
            self.metrics.digest_lag.set(stats.lag_seconds)
        if stats.dead_lettered:
            self.metrics.dead_lettered.inc(stats.dead_lettered)
        return stats

    def _size_next_batch(self, items: int, held: float) -> None:
        """SQLite: the next batch holds the write lock about `digest_lock_target_ms`, from the lock time per
        item measured so far (smoothed: one batch that was preempted while holding it moves the size only
        part of the way), between `digest_min_batch_size` and `digest_batch_size`.

        Measured (bench.ingest, 20,000 events): 500-item batches held the lock 130-310 ms each, and
        intake's commits waited behind them (p99 205-500 ms end to end against 59 ms for intake alone).
        The trade against digest CPU per event is in `Settings.digest_lock_target_ms`."""
        if items == 0 or held <= 0.0:
            return
        per_item = held / items
        self._hold_per_item = per_item if not self._hold_per_item else 0.7 * self._hold_per_item + 0.3 * per_item
        target = self.settings.digest_lock_target_ms / 1000 / self._hold_per_item
        self.batch_size = max(self.settings.digest_min_batch_size, min(self.settings.digest_batch_size, int(target)))

    def _digest_item_by_item(self) -> DigestStats:
        """Up to one batch's worth of single-item digests; an item that fails on its own has its failure
        recorded, and at its last attempt moves to the dead letters (`store.dead_letters`)."""
        total = DigestStats()
        for _ in range(self.settings.digest_batch_size):
            with self.factory() as session:
                oldest = session.scalar(select(RawItem.id).where(queue.claimable()).order_by(RawItem.id).limit(1))
            if oldest is None:
                break
            try:
                # that item by its id: another worker's lock makes the claim empty, not a wrong item's failure
                stats = digest_batch(self.factory, symbolicate=self.symbolicate, only_item=oldest)
            except Exception as exc:  # one item's boundary, as in `digest_once`
                if is_transient(exc):
                    raise
                log.error("digest: item %s failed: %s", oldest, _reason(exc))
                with transaction(self.factory) as session:
                    dead = dead_letters.record_failure(session, oldest, _reason(exc))
                if dead:
                    log.error("digest: item %s failed %d times: moved to the dead letters", oldest, queue.MAX_ATTEMPTS)
                    queue.delete_digested(self.factory)
                    total.dead_lettered += 1
                total.items += 1
                total.failed += 1
                continue
            if not stats.items:
                break
            total.add(stats)
        else:
            total.full = True  # a whole batch's worth, one by one: more may be waiting
        return total

    def compact_queue_after_drain(self) -> None:
        """Once the queue is drained after this worker digested some of it, give its free space back to the
        file system (`queue.compact_queue`); at most once a minute, as a trickle drains every few batches."""
        if not self._digested_since_compact or time.monotonic() - self._compacted_at < COMPACT_EVERY_SECONDS:
            return
        self._digested_since_compact = 0
        self._compacted_at = time.monotonic()
        engine = self.factory.kw["bind"]
        try:
            freed = queue.compact_queue(engine, min_free_bytes=int(self.settings.queue_compact_min_mb * 1048576))
        except OperationalError as exc:  # locked or busy: the next drain tries again
            log.warning("queue not compacted: %s", exc.orig)
            return
        if freed:
            log.info("queue compacted after a drain: %.1f MB given back to the file system", freed / 1048576)

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
        heartbeat = Heartbeat(
            self.factory,
            self.owner,
            interval=self.settings.worker_heartbeat_seconds,
            alive_for=self.settings.worker_stale_after_seconds,
        )
        heartbeat.start()
        if self._checkpointer is not None:
            self._checkpointer.start()
        background = [
            threading.Thread(target=_run_in_background, args=(job, stop), name=job.name, daemon=True)
            for job in self.background_jobs
        ]
        for thread in background:
            thread.start()
        try:
            self._loop(stop)
        finally:
            stop.set()  # the loop ended on an error: the background jobs end with it
            for thread in background:
                thread.join(timeout=60)
            if self._checkpointer is not None:
                self._checkpointer.stop()
            heartbeat.stop()
        log.info("worker %s stopped", self.owner)

    def _loop(self, stop: threading.Event) -> None:
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
            self._digested_since_compact += stats.items
            if not stats.items:
                self.compact_queue_after_drain()
            self.run_due_jobs()
            if not stats.full:  # the queue is empty, or about to be: wait for more
                stop.wait(self.settings.digest_interval_seconds)
