"""Wiring: builds a Worker with every job the settings ask for (used by `serve`, `worker`, `demo`), and
sets up the garbage collector of a long-running process."""

from __future__ import annotations

import gc
import logging
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from detector.config import Settings
from detector.metrics import Metrics
from detector.scheduling import DeliveryJob, DetectionJob
from detector.sourcemaps.symbolicator import make_symbolicator
from detector.sources.sentry_pull import SentryPull, pull_is_configured
from detector.store.db import make_engine, make_sessionmaker
from detector.store.retention import apply_event_retention
from detector.times import iso_utc
from detector.worker import PeriodicJob, Worker

log = logging.getLogger(__name__)


DELIVERY_INTERVAL_SECONDS = 1.0
"""How often a worker looks for due alerts and webhooks: an alert waits at most this long past its due time."""


def retain_events(factory: Any, settings: Settings) -> int:
    """The retention task: stored events older than the retention go; counts and signatures stay."""
    cutoff = datetime.now(UTC) - timedelta(days=settings.raw_event_retention_days)
    deleted = apply_event_retention(factory, cutoff=cutoff)
    if deleted:
        log.info("retention: deleted %d stored events before %s (counts and signatures kept)", deleted, iso_utc(cutoff))
    return deleted


def build_worker_from_settings(settings: Settings, metrics: Metrics, factory: Any = None) -> Worker:
    factory = factory or make_sessionmaker(make_engine(settings.database_url))
    worker = Worker(settings=settings, factory=factory, metrics=metrics, symbolicate=make_symbolicator())
    worker.jobs.append(PeriodicJob("detection", 1.0, DetectionJob(factory, settings, metrics).run))
    delivery = DeliveryJob(factory, settings, metrics)
    worker.background_jobs.append(PeriodicJob("delivery", DELIVERY_INTERVAL_SECONDS, delivery.run))
    retention = partial(retain_events, factory, settings)
    worker.jobs.append(PeriodicJob("event-retention", settings.raw_event_retention_interval_seconds, retention))
    if pull_is_configured(settings):
        pull = SentryPull.from_settings(settings, factory)
        worker.jobs.append(PeriodicJob("sentry-pull", settings.sentry_pull_interval_seconds, pull.run))
    return worker


def build_worker(state: Any) -> Worker:
    """The in-process worker of `detector serve`, sharing the API's engine and metrics."""
    return build_worker_from_settings(state.settings, state.metrics, state.factory)


def freeze_startup_objects() -> None:
    """Put everything alive now (modules, classes, the app: some 300,000 objects in `detector serve`) out of
    the cyclic garbage collector's sight for the life of the process. Call it once a long-running process
    has started (`serve` once its app is built, `worker` before its loop).

    A full collection walks every tracked object: in the API process one took 100-123 ms, during which
    no request was answered (bench.ingest --rate 5000: one such pause in a 12 s run put p99 at 83 ms,
    p50 1.4 ms). Frozen objects are still freed by reference counting; only cycles among them would
    stay, and they were alive when frozen."""
    gc.collect()
    gc.freeze()
