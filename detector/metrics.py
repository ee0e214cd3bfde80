"""Prometheus metrics, one registry per running app/worker (so tests can build several).

`detector serve` runs its worker (and any extra API processes) in processes of their own, so it turns on
prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set before any process imports
prometheus_client): every process writes its values to files there and `/metrics` (`exposition`) adds
them up, so a counter is true whichever process did the work. Gauges take the most recent value set by
any process. Without the variable (tests, a lone `detector worker`) each registry holds its own values.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from detector.store.dead_letters import count_dead_letters
from detector.store.models import Anomaly, Notification, WorkerLease
from detector.store.queue import oldest_received, queue_depth
from detector.store.size import measure_store

M = TypeVar("M", Counter, Gauge, Histogram)

MOST_RECENT: dict[str, Any] = {"multiprocess_mode": "mostrecent"}
"""Gauges in multiprocess mode: the value last set by any process (the API sets the database's)."""


class Children(Generic[M]):
    """`metric.labels(value)` of a one-label metric, remembered per value.

    prometheus_client's `labels()` validates and joins the labels and takes a lock on every call
    (~4 us here); intake counts every request, so it looks a child up once per value. A child is made
    on first use, as `labels()` would, so /metrics shows the same series as before.
    """

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[str, M] = {}

    def __call__(self, value: str) -> M:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = self._metric.labels(value)
        return child


STORE_SIZE_EVERY_SECONDS = 60.0
"""A scrape measures the store's size at most this often (a count of a big SQLite table takes a while)."""


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    store_measured_at: float | None = None
    """`time.monotonic()` of the last store measurement by this process."""

    def __post_init__(self) -> None:
        r = self.registry
        self.intake_items = Counter(
            "detector_intake_items", "Intake items accepted, by type", ["item_type"], registry=r
        )
        self.intake_rejected = Counter(
            "detector_intake_rejected", "Intake requests refused, by HTTP status", ["status"], registry=r
        )
        self.intake_latency = Histogram(
            "detector_intake_seconds",
            "Intake request handling time",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.intake_items_of = Children(self.intake_items)
        self.intake_rejected_of = Children(self.intake_rejected)
        self.digested_events = Counter("detector_digested_events", "Events digested", registry=r)
        self.dead_lettered = Counter(
            "detector_dead_lettered_items",
            "Intake items moved to the dead letters after their last failed digest attempt",
            registry=r,
        )
        self.digest_lag = Gauge(
            "detector_digest_lag_seconds",
            "Age of the oldest item in the last digested batch",
            **MOST_RECENT,
            registry=r,
        )
        self.queue_depth = Gauge("detector_queue_depth", "Raw items waiting for digest", **MOST_RECENT, registry=r)
        self.detection_passes = Counter("detector_detection_passes", "Detection passes run", registry=r)
        self.detection_failures = Counter(
            "detector_detection_failures", "Detection passes that raised (logged; the next pass retries)", registry=r
        )
        self.detection_seconds = Histogram("detector_detection_seconds", "Detection pass duration", registry=r)
        self.anomalies = Counter("detector_anomalies", "Anomalies opened, by kind", ["kind"], registry=r)
        self.alerts_sent = Counter("detector_alerts_sent", "Alert messages accepted by Slack", registry=r)
        self.alert_failures = Counter("detector_alert_failures", "Alert sends that failed (kept for retry)", registry=r)
        self.pull_events = Counter("detector_pull_events", "Events pulled from Sentry", registry=r)
        # Read from the database at scrape time, so they hold whichever process did the work.
        self.oldest_queued_seconds = Gauge(
            "detector_oldest_queued_seconds",
            "Age of the oldest raw item waiting for digest (digest lag)",
            **MOST_RECENT,
            registry=r,
        )
        self.dead_letters = Gauge(
            "detector_dead_letters",
            "Intake items in the dead letters (see `detector queue dead-letters`)",
            **MOST_RECENT,
            registry=r,
        )
        self.open_anomalies = Gauge(
            "detector_open_anomalies", "Anomalies in state open, by kind", ["kind"], **MOST_RECENT, registry=r
        )
        self.last_pass_age = Gauge(
            "detector_last_detection_pass_age_seconds",
            "Seconds since the latest detection pass of any project",
            **MOST_RECENT,
            registry=r,
        )
        self.alerts_waiting = Gauge(
            "detector_alerts_waiting",
            "Alert messages not yet accepted by Slack, by state",
            ["state"],
            **MOST_RECENT,
            registry=r,
        )
        self.store_rows = Gauge(
            "detector_store_rows",
            "Rows per main table (PostgreSQL: the planner's estimate past a million rows)",
            ["table"],
            **MOST_RECENT,
            registry=r,
        )
        self.store_bytes = Gauge(
            "detector_store_bytes",
            "Bytes the database takes on disk (SQLite: main and queue files with their WALs)",
            **MOST_RECENT,
            registry=r,
        )
        self.store_table_bytes = Gauge(
            "detector_store_table_bytes",
            "PostgreSQL: bytes per main table, with its indexes and TOAST",
            ["table"],
            **MOST_RECENT,
            registry=r,
        )


def refresh_database_gauges(session: Session, metrics: Metrics) -> None:
    """Set the gauges that describe shared state (queue, anomalies, passes, alert outbox)."""
    now = datetime.now(UTC)
    metrics.queue_depth.set(queue_depth(session))
    oldest = oldest_received(session)
    metrics.oldest_queued_seconds.set((now - oldest).total_seconds() if oldest else 0.0)
    metrics.dead_letters.set(count_dead_letters(session))
    for kind, count in session.execute(
        select(Anomaly.kind, func.count()).where(Anomaly.state == "open").group_by(Anomaly.kind)
    ).all():
        metrics.open_anomalies.labels(kind=kind).set(count)
    last = session.scalar(select(func.max(WorkerLease.last_run_at)).where(WorkerLease.name.like("detect:%")))
    metrics.last_pass_age.set((now - last).total_seconds() if last else -1)
    for state, count in session.execute(
        select(Notification.state, func.count()).where(Notification.state != "sent").group_by(Notification.state)
    ).all():
        metrics.alerts_waiting.labels(state=state).set(count)
    refresh_store_size(session, metrics)


def refresh_store_size(session: Session, metrics: Metrics) -> None:
    """Set the store size gauges, unless this process measured less than `STORE_SIZE_EVERY_SECONDS` ago."""
    now = time.monotonic()
    if metrics.store_measured_at is not None and now - metrics.store_measured_at < STORE_SIZE_EVERY_SECONDS:
        return
    size = measure_store(session)
    for table, rows in size.rows.items():
        metrics.store_rows.labels(table=table).set(rows)
    if size.bytes_on_disk is not None:
        metrics.store_bytes.set(size.bytes_on_disk)
    for table, table_bytes in size.table_bytes.items():
        metrics.store_table_bytes.labels(table=table).set(table_bytes)
    metrics.store_measured_at = now


MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def exposition(metrics: Metrics) -> bytes:
    """The text `/metrics` answers: every process's values in multiprocess mode, else this registry's."""
    if os.environ.get(MULTIPROCESS_DIR):
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(metrics.registry)
