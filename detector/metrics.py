"""Prometheus metrics, one registry per running app/worker (so tests can build several)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

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
        self.digested_events = Counter("detector_digested_events", "Events digested", registry=r)
        self.digest_lag = Gauge(
            "detector_digest_lag_seconds", "Age of the oldest item in the last digested batch", registry=r
        )
        self.queue_depth = Gauge("detector_queue_depth", "Raw items waiting for digest", registry=r)
        self.detection_passes = Counter("detector_detection_passes", "Detection passes run", registry=r)
        self.detection_seconds = Histogram(
            "detector_detection_seconds", "Detection pass duration", registry=r
        )
        self.anomalies = Counter("detector_anomalies", "Anomalies opened, by kind", ["kind"], registry=r)
        self.alerts_sent = Counter("detector_alerts_sent", "Alert messages accepted by Slack", registry=r)
        self.alert_failures = Counter(
            "detector_alert_failures", "Alert sends that failed (kept for retry)", registry=r
        )
        self.pull_events = Counter("detector_pull_events", "Events pulled from Sentry", registry=r)
