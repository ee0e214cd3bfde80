"""The alert outbox: anomalies become queued Slack messages; the worker delivers them.

Queuing happens in the transaction that records the anomaly, so an alert is never lost; delivery
happens later, outside any transaction, so a Slack outage never delays detection. Messages wait in
the `notifications` table (with `next_attempt_at` from Slack's `Retry-After` or a backoff) until Slack
accepts them. A row is leased before it is sent, so two workers never send the same row.

Retries belong to the outbox, not to the sender: each row gets one request per delivery round, and the
first failure that is not the message's own fault (an outage, a timeout, a 429) ends the round and
postpones every row the round still held. Delivery runs in a thread of the worker's own
(`scheduling.DeliveryJob`), so a Slack that hangs delays alerts only, never the digest or detection.

A 429 waits exactly Slack's `Retry-After` and is not an attempt (Slack declined to process the
message; it says nothing about an outage), so rate limits neither grow the backoff nor bring a row
closer to giving up. Other transient failures wait 2, 4, 8 ... seconds, up to
`slack_retry_max_seconds`: once Slack is back, a waiting alert goes out within that interval. A row is
given up (`failed`) when Slack refuses it for good, or when it has failed for `GIVE_UP_AFTER`.

With a bot token (`channel == "bot"`) the first message opens a thread; growth and state changes
(`enqueue_state_change`, e.g. a resolve through the API) are posted as replies in it.
"""

from __future__ import annotations

import html
import logging
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from detector.alerts.blocks import alert_blocks, follow_up_blocks, update_blocks, verdict_blocks
from detector.alerts.content import AlertContent, ReleaseFollowUp, TestedSegment
from detector.alerts.slack import BotSender, SendResult, WebhookSender
from detector.config import Settings
from detector.detection import AnomalyChange
from detector.metrics import Metrics
from detector.store.anomalies import anomaly_url, spike_ended_at
from detector.store.db import transaction
from detector.store.models import Anomaly, Deploy, Notification, Project, Signature

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
GIVE_UP_AFTER = timedelta(hours=24)
"""A message still undelivered this long after it was queued is marked failed: its news is a day old."""


def channel_for(settings: Settings) -> str | None:
    """Where alerts go: the bot (threads) when a token and channel are set, else the incoming webhook."""
    if settings.slack_bot_token and settings.slack_channel:
        return "bot"
    if settings.slack_webhook_url:
        return "webhook"
    return None


def enqueue_alerts(session: Session, changes: Iterable[AnomalyChange], *, channel: str | None) -> int:
    """Queue one message per new anomaly, and a thread update per anomaly that grew or whose spike ended
    (bot only; an end only where the alert went out in that channel, so there is a thread to tell)."""
    if channel is None:
        return 0
    queued = 0
    now = datetime.now(UTC)
    for change in changes:
        if change.change not in ("created", "grew", "ended", "followed"):
            continue
        if change.change in ("grew", "ended", "followed") and channel != "bot":
            continue  # an incoming webhook cannot reply in a thread; a new message per update is noise
        if change.change in ("grew", "ended", "followed") and _is_muted(session, change.anomaly_id):
            continue  # muting promised "no further updates"
        if change.kind == "release_error_rate" and _explained_by_signature(session, change.anomaly_id):
            continue  # the signature-level alert of the same deploy already says what broke
        if change.change == "followed" and not _was_alerted(session, change.anomaly_id, channel):
            continue  # no thread to reply in
        revision = (
            session.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.anomaly_id == change.anomaly_id, Notification.channel == channel)
            )
            or 0
        )
        if change.change == "ended" and revision == 0:
            continue  # never alerted here: no thread to tell
        session.add(
            Notification(
                anomaly_id=change.anomaly_id,
                channel=channel,
                revision=revision,
                purpose="new" if revision == 0 else ("follow" if change.change == "followed" else "update"),
                state="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        queued += 1
    session.flush()
    return queued


def enqueue_state_change(session: Session, anomaly_id: int, *, channel: str | None) -> bool:
    """Queue a thread reply saying the anomaly's new state (resolved, acknowledged, muted, reopened).

    Only for the bot channel, and only when the anomaly was alerted there (there is a thread to reply
    in); returns whether a message was queued. Call it in the transaction that changes the state.
    """
    if channel != "bot":
        return False
    revision = (
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.anomaly_id == anomaly_id, Notification.channel == channel)
        )
        or 0
    )
    if revision == 0:
        return False
    now = datetime.now(UTC)
    session.add(
        Notification(
            anomaly_id=anomaly_id,
            channel=channel,
            revision=revision,
            purpose="update",
            state="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    session.flush()
    return True


def enqueue_verdict_reply(session: Session, anomaly_id: int, verdict: dict[str, Any], *, channel: str | None) -> bool:
    """Queue a thread reply on the anomaly's alert saying its deploy's verdict (`verdict`: status, reason,
    release, deploy_id, kept in `details.verdict` for the reply); bot channel only, and only when the
    anomaly was alerted there. Call it in the transaction that records the verdict."""
    if channel != "bot" or not _was_alerted(session, anomaly_id, channel) or _is_muted(session, anomaly_id):
        return False
    anomaly = session.get(Anomaly, anomaly_id)
    assert anomaly is not None
    anomaly.details = {**(anomaly.details or {}), "verdict": verdict}
    revision = (
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.anomaly_id == anomaly_id, Notification.channel == channel)
        )
        or 0
    )
    now = datetime.now(UTC)
    session.add(
        Notification(
            anomaly_id=anomaly_id,
            channel=channel,
            revision=revision,
            purpose="verdict",
            state="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    session.flush()
    return True


def _was_alerted(session: Session, anomaly_id: int, channel: str) -> bool:
    first = session.scalar(
        select(Notification.id).where(
            Notification.anomaly_id == anomaly_id, Notification.channel == channel, Notification.purpose == "new"
        )
    )
    return first is not None


def _is_muted(session: Session, anomaly_id: int) -> bool:
    anomaly = session.get(Anomaly, anomaly_id)
    return anomaly is not None and anomaly.state == "muted"


def _explained_by_signature(session: Session, anomaly_id: int) -> bool:
    anomaly = session.get(Anomaly, anomaly_id)
    if anomaly is None or anomaly.deploy_id is None:
        return False
    return (
        session.scalar(
            select(func.count())
            .select_from(Anomaly)
            .where(
                Anomaly.deploy_id == anomaly.deploy_id,
                Anomaly.kind.in_(("new_signature", "regression")),
            )
        )
        or 0
    ) > 0


def tested_segment(details: dict[str, Any]) -> TestedSegment | None:
    """The segment a segment test found the anomaly in, from its `details` (None if it has none)."""
    if not details.get("segment") or details.get("segment_rate") is None:
        return None
    tested: TestedSegment = {
        "segment": str(details["segment"]),
        "rate": float(details["segment_rate"]),
        "sessions": int(details.get("segment_sessions") or 0),
        "sessions_affected": int(details.get("segment_sessions_affected") or 0),
    }
    if details.get("segment_baseline_rate") is not None:
        tested["baseline_rate"] = float(details["segment_baseline_rate"])
    return tested


def alert_content_for(session: Session, anomaly_id: int, public_url: str) -> AlertContent:
    """Everything the Slack message shows, read from the anomaly, its signature and its deploy."""
    anomaly = session.get(Anomaly, anomaly_id)
    if anomaly is None:
        raise LookupError(f"no anomaly {anomaly_id}")
    project = session.get(Project, anomaly.project_id)
    assert project is not None
    deploy = session.get(Deploy, anomaly.deploy_id) if anomaly.deploy_id else None
    signature = session.get(Signature, anomaly.signature_id) if anomaly.signature_id else None
    minutes = None
    if deploy is not None:
        minutes = max(0.0, (anomaly.detected_at - deploy.deployed_at).total_seconds() / 60)
    return AlertContent(
        anomaly_id=anomaly.id,
        kind=anomaly.kind,  # type: ignore[arg-type]
        state=anomaly.state,  # type: ignore[arg-type]
        title=anomaly.title,
        culprit=signature.culprit if signature else None,
        project_slug=project.slug,
        release=anomaly.release or None,
        environment=anomaly.environment or None,
        deploy=None
        if deploy is None
        else {"release": deploy.release, "environment": deploy.environment, "deployed_at": deploy.deployed_at},
        minutes_after_deploy=minutes,
        detected_at=anomaly.detected_at,
        events=anomaly.events,
        users=anomaly.users,
        sessions_affected=anomaly.sessions_affected,
        rate=anomaly.rate,
        baseline_rate=anomaly.baseline_rate,
        links={"api_url": anomaly_url(public_url, project.slug, anomaly.id)},
        segments=list(anomaly.segments or []),
        tested_segment=tested_segment(anomaly.details or {}),
        suspects=[
            {
                "sha": s["sha"],
                "message": s["message"],
                "author": s["author"],
                "score": float(s["score"]),
                "evidence": list(s.get("evidence") or []),
            }
            for s in (anomaly.suspects or [])
        ],
        evidence_unavailable=list(anomaly.evidence_unavailable or []),
        follow_up=_latest_follow_up(anomaly),
        ended_at=spike_ended_at(anomaly),
    )


def _latest_follow_up(anomaly: Anomaly) -> ReleaseFollowUp | None:
    details = anomaly.details or {}
    release = details.get("latest_follow_up")
    said = (details.get("releases") or {}).get(release) if release else None
    if not said:
        return None
    return ReleaseFollowUp(
        release=str(release),
        status=str(said["status"]),
        sessions=int(said["sessions"]),
        affected=int(said["affected"]),
        rate=float(said["rate"]),
        same_rate=bool(said["same_rate"]),
    )


def _claim_due(factory: sessionmaker[Session], owner: str, now: datetime, limit: int) -> list[int]:
    with transaction(factory) as session:
        stmt = (
            select(Notification.id)
            .where(
                Notification.state == "pending",
                Notification.next_attempt_at <= now,
                or_(Notification.lease_until.is_(None), Notification.lease_until < now),
            )
            .order_by(Notification.id)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(session.scalars(stmt))
        if ids:
            session.execute(
                update(Notification).where(Notification.id.in_(ids)).values(lease_owner=owner, lease_until=now + LEASE)
            )
        return ids


def _send(settings: Settings, notification: Notification, message: dict[str, Any], thread_ts: str | None) -> SendResult:
    # One request: the outbox owns retries (see the module docstring), so the sender never sleeps.
    timeout = settings.slack_timeout_seconds
    if notification.channel == "bot":
        if not (settings.slack_bot_token and settings.slack_channel):
            return SendResult(ok=False, error="the bot channel is not configured (DETECTOR_SLACK_BOT_TOKEN)")
        bot = BotSender(
            settings.slack_bot_token,
            settings.slack_channel,
            base_url=settings.slack_api_url,
            timeout=timeout,
            max_attempts=1,
        )
        return bot.reply(thread_ts, message) if thread_ts else bot.post(message)
    if not settings.slack_webhook_url:
        return SendResult(ok=False, error="the webhook channel is not configured (DETECTOR_SLACK_WEBHOOK_URL)")
    return WebhookSender(settings.slack_webhook_url, timeout=timeout, max_attempts=1).post(message)


def retry_wait(result: SendResult, attempts: int, *, cap_seconds: float) -> timedelta:
    """Slack's `Retry-After` when it gave one (as is), else 2, 4, 8 … seconds by the failed attempts so
    far (429s are not attempts), at most `cap_seconds`."""
    if result.retry_after is not None:
        return timedelta(seconds=result.retry_after)
    return timedelta(seconds=min(cap_seconds, 2.0 ** min(max(attempts, 1), 20)))


def _first_message(session: Session, notification: Notification) -> Notification | None:
    return session.scalar(
        select(Notification).where(
            Notification.anomaly_id == notification.anomaly_id,
            Notification.channel == notification.channel,
            Notification.revision == 0,
        )
    )


def _release(factory: sessionmaker[Session], ids: list[int], *, not_before: datetime | None = None) -> None:
    """Give claimed rows back unsent (and, with `not_before`, not due before then)."""
    if not ids:
        return
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    if not_before is not None:
        values["next_attempt_at"] = not_before
    with transaction(factory) as session:
        session.execute(
            update(Notification).where(Notification.id.in_(ids), Notification.state == "pending").values(**values)
        )


def deliver_pending(
    factory: sessionmaker[Session], settings: Settings, *, limit: int = 20, metrics: Metrics | None = None
) -> int:
    """Send the alerts that are due; returns how many Slack accepted. Never raises for Slack's failures.

    A transient failure (outage, timeout, 429) ends the round: that row waits `Retry-After` or its
    backoff, and the rows not yet tried wait as long; a permanent one (Slack refused the message, the
    token or the channel) marks the row `failed` and the round goes on.
    """
    owner = f"{socket.gethostname()}:{os.getpid()}"
    now = datetime.now(UTC)
    sent = 0
    claimed = _claim_due(factory, owner, now, limit)
    for position, notification_id in enumerate(claimed):
        with factory() as session:
            notification = session.get(Notification, notification_id)
            assert notification is not None
            content = alert_content_for(session, notification.anomaly_id, settings.public_url)
            reply = notification.purpose in ("update", "follow", "verdict")
            first = _first_message(session, notification) if reply else None
            thread_ts = first.slack_ts if first is not None else None
            if notification.purpose == "follow":
                message = follow_up_blocks(content)
            elif notification.purpose == "verdict":
                anomaly = session.get(Anomaly, notification.anomaly_id)
                message = verdict_blocks(content, dict((anomaly.details or {}).get("verdict") or {}) if anomaly else {})
            else:
                message = update_blocks(content) if reply else alert_blocks(content)
        if reply and first is not None and first.state == "failed":
            _finish(
                factory,
                notification_id,
                SendResult(ok=False, error="no thread: the first message failed", permanent=True),
            )
            continue
        if reply and thread_ts is None:
            # The first message has not gone out yet; this reply waits for its thread.
            _release(factory, [notification_id], not_before=datetime.now(UTC) + timedelta(seconds=1))
            continue
        result = _send(settings, notification, message, thread_ts)
        retry_at = _finish(
            factory, notification_id, result, thread_ts=thread_ts, cap_seconds=settings.slack_retry_max_seconds
        )
        if result.ok:
            sent += 1
            continue
        if metrics is not None:
            metrics.alert_failures.inc()
        if retry_at is not None:
            _release(factory, claimed[position + 1 :], not_before=retry_at)
            break
    return sent


def _finish(
    factory: sessionmaker[Session],
    notification_id: int,
    result: SendResult,
    *,
    thread_ts: str | None = None,
    cap_seconds: float = 30.0,
) -> datetime | None:
    """Record one send's outcome; returns when to try again if it is worth trying again."""
    with transaction(factory) as session:
        row = session.get(Notification, notification_id)
        assert row is not None
        rate_limited = not result.ok and not result.permanent and result.retry_after is not None
        if not rate_limited:
            row.attempts += 1
        row.lease_owner = None
        row.lease_until = None
        if result.ok:
            row.state, row.sent_at, row.slack_ts, row.last_error = "sent", datetime.now(UTC), result.ts, None
            row.thread_ts = thread_ts
            log.info("alert %s for anomaly %s delivered to %s", notification_id, row.anomaly_id, row.channel)
            return None
        row.last_error = result.error
        if result.permanent or datetime.now(UTC) - row.created_at >= GIVE_UP_AFTER:
            row.state = "failed"
            log.error("alert %s failed for good: %s", notification_id, result.error)
            return None
        wait = retry_wait(result, row.attempts, cap_seconds=cap_seconds)
        row.next_attempt_at = datetime.now(UTC) + wait
        log.warning("alert %s not delivered (%s); next try in %s", notification_id, result.error, wait)
        return row.next_attempt_at


def render_alert_text(message: dict[str, Any]) -> str:
    """A Block Kit message as plain terminal text (what the demo prints)."""
    lines: list[str] = []
    for block in message.get("blocks", []):
        kind = block.get("type")
        if kind == "header":
            title = block["text"]["text"]
            lines += [title, "=" * min(len(title), 100)]
        elif kind == "section":
            if "text" in block:
                lines.append(block["text"]["text"])
            for item in block.get("fields", []):
                lines.append(item["text"])
        elif kind == "context":
            lines.append("  ".join(e.get("text", "") for e in block.get("elements", [])))
        elif kind == "divider":
            lines.append("-" * 60)
        lines.append("")
    # the terminal is not Slack: undo mrkdwn's escapes and bold markers
    return html.unescape("\n".join(lines).replace("*", "")).strip() + "\n"
