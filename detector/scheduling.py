"""Which detection pass runs when, across any number of workers: every `detect_interval_seconds` per
project, and at once after a deploy (`request_detection`). One `worker_leases` row per project
makes sure a pass runs in one worker at a time.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.detection import AnomalyChange, run_detection
from detector.metrics import Metrics
from detector.notify import channel_for, deliver_pending, enqueue_alerts
from detector.store.db import transaction
from detector.store.dialect import upsert_insert
from detector.store.leases import detection_lease_name
from detector.store.models import Anomaly, Deploy, Project, WorkerLease
from detector.times import iso_utc
from detector.verdict_hooks import deliver_verdict_webhooks, enqueue_verdict_messages
from detector.verdicts import VerdictChange

log = logging.getLogger(__name__)


def _claim(session: Session, name: str, owner: str, now: datetime, interval: timedelta, lease: timedelta) -> bool:
    session.execute(upsert_insert(session, WorkerLease).values(name=name).on_conflict_do_nothing())
    result = session.execute(
        update(WorkerLease)
        .where(
            WorkerLease.name == name,
            or_(WorkerLease.lease_until.is_(None), WorkerLease.lease_until < now),
            or_(
                WorkerLease.last_run_at.is_(None),
                WorkerLease.last_run_at <= now - interval,
                WorkerLease.requested_at > WorkerLease.last_run_at,
            ),
        )
        .values(owner=owner, lease_until=now + lease)
    )
    return bool(result.rowcount)


@dataclass
class DeliveryJob:
    """What leaves for other services: the Slack outbox and the verdict webhooks, whatever is due. The
    worker runs it in a thread of its own (`Worker.background_jobs`): a Slack or webhook receiver that
    hangs until the request's timeout delays those messages, never the digest or a detection pass."""

    factory: sessionmaker[Session]
    settings: Settings
    metrics: Metrics

    def run(self) -> None:
        deliver_verdict_webhooks(self.factory, self.settings)
        if channel_for(self.settings) is not None:
            sent = deliver_pending(self.factory, self.settings, metrics=self.metrics)
            if sent:
                self.metrics.alerts_sent.inc(sent)


@dataclass
class DetectionJob:
    """The worker's periodic job: due detection passes (their alerts are queued in the outbox, which
    `DeliveryJob` sends)."""

    factory: sessionmaker[Session]
    settings: Settings
    metrics: Metrics
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def run(self) -> None:
        if self.settings.detect_schedule == "on":
            self.run_due_passes()

    def run_due_passes(self) -> None:
        interval = timedelta(seconds=self.settings.detect_interval_seconds)
        # A worker killed mid-pass keeps its lease until it expires: `lease_seconds` bounds how long
        # the project then goes without passes. A pass outliving it may overlap another (harmless:
        # the anomaly's unique key and the outbox transaction keep one anomaly and one alert).
        lease = timedelta(seconds=self.settings.lease_seconds)
        with self.factory() as session:
            project_ids = list(session.scalars(select(Project.id).order_by(Project.id)))
        for project_id in project_ids:
            now = datetime.now(UTC)
            with transaction(self.factory) as session:
                if not _claim(session, detection_lease_name(project_id), self.owner, now, interval, lease):
                    continue
            try:
                with self.metrics.detection_seconds.time():
                    changes = run_project_pass(self.factory, self.settings, project_id=project_id, at=now)
            except Exception:  # task boundary: one project's failing pass must not starve the others
                log.exception("detection pass of project %s failed", project_id)
                self.metrics.detection_failures.inc()
                changes = []
            else:
                self.metrics.detection_passes.inc()
            finally:
                with transaction(self.factory) as session:
                    session.execute(
                        update(WorkerLease)
                        .where(WorkerLease.name == detection_lease_name(project_id), WorkerLease.owner == self.owner)
                        .values(owner=None, lease_until=None, last_run_at=now)
                    )
            for change in changes:
                if change.change == "created":
                    self.metrics.anomalies.labels(kind=change.kind).inc()


def run_project_pass(
    factory: sessionmaker[Session], settings: Settings, *, project_id: int, at: datetime
) -> list[AnomalyChange]:
    """One detection pass whose new anomalies queue their Slack alerts in the same transaction."""
    channel = channel_for(settings)

    def record_verdict_changes(session: Session, changes: list[VerdictChange]) -> None:
        project = session.get(Project, project_id)
        assert project is not None
        enqueue_verdict_messages(session, project, changes, channel=channel, public_url=settings.public_url)

    changes = run_detection(
        factory,
        project_id=project_id,
        at=at,
        record_alerts=lambda session, changes: enqueue_alerts(session, changes, channel=channel),
        record_verdict_changes=record_verdict_changes,
    )
    if changes and log.isEnabledFor(logging.INFO):
        log_changes(factory, changes, channel=channel)
    return changes


def log_changes(factory: sessionmaker[Session], changes: list[AnomalyChange], *, channel: str | None) -> None:
    """One line per anomaly a pass opened or updated: kind, title, deploy, top suspect, and where its alert
    goes (an operator without Slack learns of anomalies from the log)."""
    alerting = f"alert queued for Slack ({channel})" if channel else "no alert: Slack is not configured"
    with factory() as session:
        for change in changes:
            anomaly = session.get(Anomaly, change.anomaly_id)
            if anomaly is None:
                continue
            deploy = session.get(Deploy, anomaly.deploy_id) if anomaly.deploy_id else None
            deployed = "no deploy"
            if deploy is not None:
                deployed = f"deploy {deploy.id} of {deploy.release} at {iso_utc(deploy.deployed_at)}"
            top = (anomaly.suspects or [None])[0]
            suspect = "no suspect"
            if top:
                summary = (str(top.get("message") or "").splitlines() or [""])[0]
                suspect = f"top suspect {top['sha'][:12]} {summary!r}"
            log.info(
                "anomaly %s %s: %s %r in %s; %s; %s; %s",
                anomaly.id, change.change, anomaly.kind, anomaly.title, anomaly.release or "-", deployed, suspect,
                alerting if change.change == "created" else "no new alert",
                extra={
                    "anomaly_id": anomaly.id, "change": change.change, "kind": anomaly.kind, "title": anomaly.title,
                    "release": anomaly.release, "deploy_id": deploy.id if deploy else None,
                    "top_suspect": top["sha"] if top else None, "alert_channel": channel,
                },
            )  # fmt: skip
