"""SQLAlchemy 2.0 typed models: the whole schema. Changes go through Alembic migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from detector.store.scopes import ALL_SCOPES_TEXT
from detector.store.types import BigId, Json, UTCDateTime


class Base(DeclarativeBase):
    pass


# --- projects and credentials -------------------------------------------------------------------


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    org: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(32), default="javascript")
    public_key: Mapped[str] = mapped_column(String(32), unique=True)
    repo_path: Mapped[str | None] = mapped_column(Text)
    github_secret: Mapped[str | None] = mapped_column(String(128))
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Deploy verdicts (`detector.model.verdict.VerdictPolicy`); NULL takes the policy's default.
    gate_tolerance: Mapped[float | None] = mapped_column(Float)
    gate_absolute_margin: Mapped[float | None] = mapped_column(Float)
    gate_min_sessions: Mapped[int | None] = mapped_column(Integer)
    gate_watch_minutes: Mapped[int | None] = mapped_column(Integer)
    verdict_webhook_url: Mapped[str | None] = mapped_column(Text)
    verdict_webhook_secret: Mapped[str | None] = mapped_column(String(128))


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # `scopes.TokenScope` names, space-separated; tokens from before migration 0008 hold them all
    scopes: Mapped[str] = mapped_column(String(64), server_default=ALL_SCOPES_TEXT)


# --- intake queue and events --------------------------------------------------------------------


class RawItem(Base):
    """A validated intake item waiting for digest.

    PostgreSQL: deleted in the transaction that digests it. SQLite: the table lives in a file of its own
    (`db.queue_database_path`, attached as `db.QUEUE_SCHEMA`, where `raw_items` finds it), so the digest
    marks what it digested in `QueueDigested`, in its own transaction, and deletes it after (`queue`)."""

    __tablename__ = "raw_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_type: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class RateWindow(Base):
    """Events a project's key has sent in one minute (`minute` = unix seconds // 60), shared by every API
    process (`rate_limits`). SQLite: in the queue's file with `raw_items` (created on connect, like it), so
    intake's counting never waits for the digest's lock on the main file."""

    __tablename__ = "rate_windows"

    project_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    used: Mapped[int] = mapped_column(Integer)


class QueueDigested(Base):
    """SQLite: raw items digested but not yet deleted from the queue's file. SQLite commits a transaction
    over two files as two commits, so the digest records what it digested here, with the digest's rows,
    and deletes the items after: a crash in between leaves marked items, which are never claimed again and
    are deleted by the next batch. Empty on PostgreSQL, which deletes items as it digests them."""

    __tablename__ = "queue_digested"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)


class DeadLetter(Base):
    """An intake item the digest failed on `queue.MAX_ATTEMPTS` times, kept whole with the last error: moved
    here (from `raw_items`, in one transaction) instead of being dropped, counted by `/healthz` and
    `/metrics`, listed by `detector queue dead-letters` and put back in the queue by
    `detector queue replay-dead-letters`. In the main file on SQLite, so the move commits with the item's
    `QueueDigested` mark."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    raw_item_id: Mapped[int] = mapped_column(BigInteger)
    """The item's id in the queue (for the logs that named it)."""
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    item_type: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Signature(Base):
    __tablename__ = "signatures"
    __table_args__ = (
        UniqueConstraint("project_id", "hash"),
        Index("ix_signatures_project_id", "project_id", "id"),  # the list pages by id within a project
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    hash: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(256))
    value: Mapped[str] = mapped_column(Text)
    culprit: Mapped[str] = mapped_column(String(512))
    title: Mapped[str] = mapped_column(String(512))
    noise_class: Mapped[str | None] = mapped_column(String(32))
    in_app: Mapped[bool] = mapped_column(Boolean, default=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    first_release: Mapped[str] = mapped_column(String(250), default="")
    events: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Events counted so far, all releases (kept by the digest, like `signature_minutes`)."""
    users: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Distinct users so far, all releases: rows of `signature_users` with distinct identities."""


class SignatureRelease(Base):
    """Totals of one signature in one (release, environment), kept by the digest as it counts events.

    The signature list reads these instead of summing minutes or counting raw events per request."""

    __tablename__ = "signature_releases"

    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id", ondelete="CASCADE"), primary_key=True)
    release: Mapped[str] = mapped_column(String(250), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    events: Mapped[int] = mapped_column(Integer)
    users: Mapped[int] = mapped_column(Integer)
    """Distinct users of this signature in this release and environment."""
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    """The earliest minute counted."""
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    """The latest minute counted."""


class SignatureUser(Base):
    """Who has hit a signature (any release), and the latest minute they did.

    `identity` is what the counts take for a user: `coalesce(user_key, session_key, event_id)`. A row's
    insertion is what makes a user new to `signatures.users`; `last_minute` lets "users since" be counted
    from an index range (no raw events, which retention deletes: these rows stay, like the minute counts)."""

    __tablename__ = "signature_users"
    __table_args__ = (Index("ix_signature_users_recent", "signature_id", "last_minute"),)

    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id", ondelete="CASCADE"), primary_key=True)
    identity: Mapped[str] = mapped_column(String(128), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    last_minute: Mapped[datetime] = mapped_column(UTCDateTime)


class SignatureEnvironment(Base):
    """Totals of one signature in one environment, all releases (the list filtered by environment)."""

    __tablename__ = "signature_environments"

    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id", ondelete="CASCADE"), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    events: Mapped[int] = mapped_column(Integer)
    users: Mapped[int] = mapped_column(Integer)
    """Distinct users of this signature in this environment, over all releases."""


class SignatureHour(Base):
    """Events per hour per (signature, release, environment): the minute counts summed by hour, so a
    window of days reads tens of rows per signature instead of thousands."""

    __tablename__ = "signature_hours"

    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    release: Mapped[str] = mapped_column(String(250), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    events: Mapped[int] = mapped_column(Integer)


class SignatureUserHour(Base):
    """How many of a signature's users were last seen in each hour (a histogram of
    `signature_users.last_minute`): users seen since T are the hours after T's hour plus the rows of
    T's own hour at or after T."""

    __tablename__ = "signature_user_hours"

    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    users: Mapped[int] = mapped_column(Integer)


class SignatureReleaseUser(Base):
    """Who has hit a signature in one release and environment, and the latest minute they did: the same
    as `SignatureUser`, for `signature_releases.users` and the lists filtered by release or environment."""

    __tablename__ = "signature_release_users"

    # In this order, a user's rows in one environment (any release) are one primary-key range.
    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id", ondelete="CASCADE"), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    identity: Mapped[str] = mapped_column(String(128), primary_key=True)
    release: Mapped[str] = mapped_column(String(250), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    last_minute: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("project_id", "event_id"),
        Index("ix_events_project_minute", "project_id", "minute"),
        # The identity of a user (or session) as counting sees it, after each bucket: the digest adds a
        # batch to the per-minute distinct counts by probing these, instead of re-reading whole minutes.
        Index("ix_events_bucket_user", "signature_id", "minute", text("(coalesce(user_key, session_key, event_id))")),
        Index(
            "ix_events_bucket_session", "signature_id", "minute", text("(coalesce(session_key, user_key, event_id))")
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(32))
    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id", ondelete="CASCADE"))
    release: Mapped[str] = mapped_column(String(250))
    environment: Mapped[str] = mapped_column(String(64))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    minute: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    user_key: Mapped[str | None] = mapped_column(String(128))
    session_key: Mapped[str | None] = mapped_column(String(64))
    route: Mapped[str | None] = mapped_column(String(256))
    browser: Mapped[str | None] = mapped_column(String(64))
    os: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(Json)


class SignatureMinute(Base):
    """Per-minute counts per (signature, release, environment), recomputed from events (idempotent)."""

    __tablename__ = "signature_minutes"
    __table_args__ = (
        Index("ix_sigmin_project_minute", "project_id", "minute"),
        # a window of one signature (series, "since" totals) without reading its other minutes
        Index("ix_sigmin_signature_minute", "signature_id", "minute"),
    )

    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id", ondelete="CASCADE"), primary_key=True)
    release: Mapped[str] = mapped_column(String(250), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    events: Mapped[int] = mapped_column(Integer)
    users: Mapped[int] = mapped_column(Integer)
    sessions: Mapped[int] = mapped_column(Integer)


class SessionState(Base):
    """The latest known state of one release-health session (one row per `sid`)."""

    __tablename__ = "session_states"
    __table_args__ = (
        UniqueConstraint("project_id", "sid"),
        Index("ix_session_states_minute", "project_id", "release", "environment", "started_minute"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sid: Mapped[str] = mapped_column(String(64))
    distinct_id: Mapped[str | None] = mapped_column(String(128))
    release: Mapped[str] = mapped_column(String(250))
    environment: Mapped[str] = mapped_column(String(64))
    started: Mapped[datetime] = mapped_column(UTCDateTime)
    started_minute: Mapped[datetime] = mapped_column(UTCDateTime)
    updated: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    errors: Mapped[int] = mapped_column(Integer, default=0)
    errored: Mapped[bool] = mapped_column(Boolean, default=False)
    crashed: Mapped[bool] = mapped_column(Boolean, default=False)
    segment: Mapped[str | None] = mapped_column(String(64))
    """Browser family and major version from `attrs.user_agent` (None without a user agent)."""


class SessionAggregate(Base):
    """Pre-aggregated session counts from `sessions` items (server-mode SDKs); additive."""

    __tablename__ = "session_aggregates"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    release: Mapped[str] = mapped_column(String(250), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    started: Mapped[int] = mapped_column(Integer, default=0)
    errored: Mapped[int] = mapped_column(Integer, default=0)
    crashed: Mapped[int] = mapped_column(Integer, default=0)


class SessionMinute(Base):
    """Per-minute session counts per (release, environment): the denominator of every rate."""

    __tablename__ = "session_minutes"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    release: Mapped[str] = mapped_column(String(250), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    started: Mapped[int] = mapped_column(Integer, default=0)
    errored: Mapped[int] = mapped_column(Integer, default=0)
    crashed: Mapped[int] = mapped_column(Integer, default=0)


class SessionSegmentMinute(Base):
    """Per-minute sessions per (release, environment, browser segment), from the session states that have
    a user agent (aggregates carry none): the denominator of the segment tests."""

    __tablename__ = "session_segment_minutes"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    release: Mapped[str] = mapped_column(String(250), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    segment: Mapped[str] = mapped_column(String(64), primary_key=True)
    started: Mapped[int] = mapped_column(Integer, default=0)
    errored: Mapped[int] = mapped_column(Integer, default=0)


# --- releases, deploys, commits, source maps ----------------------------------------------------


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("org", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(250))
    ref: Mapped[str | None] = mapped_column(String(250))
    url: Mapped[str | None] = mapped_column(Text)
    date_created: Mapped[datetime] = mapped_column(UTCDateTime)
    date_started: Mapped[datetime | None] = mapped_column(UTCDateTime)
    date_released: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReleaseProject(Base):
    __tablename__ = "release_projects"

    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)


class Commit(Base):
    __tablename__ = "commits"
    __table_args__ = (UniqueConstraint("project_id", "sha"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sha: Mapped[str] = mapped_column(String(64))
    repository: Mapped[str] = mapped_column(String(250), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    author_name: Mapped[str] = mapped_column(String(250), default="")
    author_email: Mapped[str] = mapped_column(String(250), default="")
    timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enriched: Mapped[bool] = mapped_column(Boolean, default=False)


class CommitFile(Base):
    __tablename__ = "commit_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commit_id: Mapped[int] = mapped_column(ForeignKey("commits.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    change_type: Mapped[str] = mapped_column(String(1))
    old_path: Mapped[str | None] = mapped_column(Text)
    additions: Mapped[int | None] = mapped_column(Integer)
    deletions: Mapped[int | None] = mapped_column(Integer)
    patch: Mapped[str | None] = mapped_column(Text)


class ReleaseCommit(Base):
    __tablename__ = "release_commits"

    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True)
    commit_id: Mapped[int] = mapped_column(ForeignKey("commits.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Deploy(Base):
    __tablename__ = "deploys"
    __table_args__ = (
        UniqueConstraint("project_id", "release", "environment", "dedupe_key"),
        Index("ix_deploys_project_env_time", "project_id", "environment", "deployed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    release: Mapped[str] = mapped_column(String(250))
    environment: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(250))
    url: Mapped[str | None] = mapped_column(Text)
    sha: Mapped[str | None] = mapped_column(String(64))
    date_started: Mapped[datetime | None] = mapped_column(UTCDateTime)
    date_finished: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))
    dedupe_key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeployCommit(Base):
    """The commits a deploy brought (between the previous deploy of the environment and this one)."""

    __tablename__ = "deploy_commits"

    deploy_id: Mapped[int] = mapped_column(ForeignKey("deploys.id", ondelete="CASCADE"), primary_key=True)
    commit_id: Mapped[int] = mapped_column(ForeignKey("commits.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class UploadChunk(Base):
    __tablename__ = "upload_chunks"

    sha1: Mapped[str] = mapped_column(String(40), primary_key=True)
    org: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ArtifactBundle(Base):
    __tablename__ = "artifact_bundles"
    __table_args__ = (UniqueConstraint("org", "checksum"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org: Mapped[str] = mapped_column(String(64))
    checksum: Mapped[str] = mapped_column(String(40))
    release: Mapped[str | None] = mapped_column(String(250))
    dist: Mapped[str | None] = mapped_column(String(64))
    debug_id: Mapped[str | None] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(Json)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ArtifactFile(Base):
    """One file of an artifact bundle, indexed for lookup by release+URL or by debug ID."""

    __tablename__ = "artifact_files"
    __table_args__ = (
        Index("ix_artifact_files_release_url", "org", "release", "url"),
        Index("ix_artifact_files_debug_id", "debug_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bundle_id: Mapped[int] = mapped_column(ForeignKey("artifact_bundles.id", ondelete="CASCADE"))
    org: Mapped[str] = mapped_column(String(64))
    release: Mapped[str | None] = mapped_column(String(250))
    path: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    file_type: Mapped[str] = mapped_column(String(32))
    debug_id: Mapped[str | None] = mapped_column(String(64))
    sourcemap: Mapped[str | None] = mapped_column(Text)


# --- anomalies, alerts, worker state ------------------------------------------------------------


class Anomaly(Base):
    __tablename__ = "anomalies"
    __table_args__ = (
        UniqueConstraint("project_id", "key"),
        Index("ix_anomalies_project_detected", "project_id", "detected_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="open")
    signature_id: Mapped[int | None] = mapped_column(ForeignKey("signatures.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(512))
    release: Mapped[str] = mapped_column(String(250))
    environment: Mapped[str] = mapped_column(String(64))
    deploy_id: Mapped[int | None] = mapped_column(ForeignKey("deploys.id", ondelete="SET NULL"))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    crossed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    events: Mapped[int] = mapped_column(Integer, default=0)
    users: Mapped[int] = mapped_column(Integer, default=0)
    sessions_affected: Mapped[int] = mapped_column(Integer, default=0)
    rate: Mapped[float | None] = mapped_column(Float)
    baseline_rate: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    segments: Mapped[list[Any]] = mapped_column(Json, default=list)
    suspects: Mapped[list[Any]] = mapped_column(Json, default=list)
    evidence_unavailable: Mapped[list[Any]] = mapped_column(Json, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class Notification(Base):
    """The alert outbox: one row per message to send; kept until Slack accepted it."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("anomaly_id", "channel", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    anomaly_id: Mapped[int] = mapped_column(ForeignKey("anomalies.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    revision: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    slack_ts: Mapped[str | None] = mapped_column(String(64))
    thread_ts: Mapped[str | None] = mapped_column(String(64))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PullCursor(Base):
    """Where pull mode resumes after a restart, per (source, object kind)."""

    __tablename__ = "pull_cursors"

    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    state: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WorkerLease(Base):
    """A named periodic job (a project's detection pass, a pull source) held by one worker at a time."""

    __tablename__ = "worker_leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeployVerdict(Base):
    """A deploy's verdict as the latest detection pass left it, with the counts it was judged on (so a
    request may judge them again under other settings, e.g. `detector deploy verify --tolerance`)."""

    __tablename__ = "deploy_verdicts"

    deploy_id: Mapped[int] = mapped_column(ForeignKey("deploys.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """The pass's `at`: the counts hold what was known then."""
    inputs: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """When `status` last changed (wall clock)."""


class VerdictWebhook(Base):
    """The outbound webhook of a failing deploy: one row per deploy, kept until the receiver took it."""

    __tablename__ = "verdict_webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deploy_id: Mapped[int] = mapped_column(ForeignKey("deploys.id", ondelete="CASCADE"), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
