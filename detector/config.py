"""Settings, read once from `DETECTOR_*` environment variables and passed in from there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_database_url() -> str:
    """The embedded default: a SQLite file in the current directory, created on first start."""
    return f"sqlite:///{Path.cwd() / 'detector.db'}"


class Settings(BaseSettings):
    """Everything the library, worker and API can be told. Build one with `Settings()` at the edge."""

    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    public_url: str = "http://127.0.0.1:8000"  # `serve` derives it from --host/--port when unset
    org: str = "default"
    # `text` (logfmt-like lines) or `json` (one object per line, for log shippers), for serve and worker
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # intake limits, like relay's defaults
    max_envelope_bytes: int = 20 * 1024 * 1024
    max_decoded_bytes: int = 50 * 1024 * 1024
    max_event_bytes: int = 1024 * 1024
    max_items_per_envelope: int = 1000
    default_rate_limit_per_minute: int = 0  # 0 = unlimited; projects can override
    # The intake queue's bound: past either, intake answers 429 with `Retry-After` (as Sentry does over
    # quota) instead of letting a burst grow the queue, its file and the drain without limit. 100,000
    # items of bench.ingest's 2.1 KB events are ~210 MB and drain in about a minute; the bytes bound
    # holds when events are larger. Sizes are estimated (`store.queue.queue_extent`), read every
    # `queue_bound_refresh_seconds` by every API process, so all of them see what the others queued.
    queue_max_items: int = Field(default=100_000, gt=0)
    queue_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    queue_full_retry_after_seconds: int = Field(default=10, ge=1)
    queue_bound_refresh_seconds: float = Field(default=0.5, gt=0)
    # After a drain, a worker gives the queue's free space back to the file system once it is this large
    # (SQLite: VACUUM of the queue's file; PostgreSQL: VACUUM of raw_items, which truncates empty pages).
    queue_compact_min_mb: float = Field(default=16.0, ge=0)
    # Origins whose pages may post events (the browser SDK), comma-separated, `*` for any; intake only: the
    # query API answers no CORS at all. Other origins get 403, as relay refuses a project's disallowed domains.
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    # Intake refuses an event whose own timestamp is older than this, as relay does past `max_secs_in_past`
    # (30 days there; 90 here, so replays of recent history fit): its minute's counts were settled long
    # ago, and retention may have removed the raw events that counting distinct users of that minute needs.
    max_event_age_days: float = Field(default=90, gt=0)
    # what one HTTP connection of `detector serve` may make the server hold, and for how long
    # (`detector.http_server`): a request head's bytes, then seconds for the head and for the body
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    request_header_timeout_seconds: float = Field(default=10.0, gt=0)
    request_body_timeout_seconds: float = Field(default=60.0, gt=0)

    # digest and worker
    # Items per digest transaction at most (with a lock target below, the largest); a batch takes what is
    # queued, so batches grow only while the digest is behind, which is when their cost per event matters.
    # Indexes with random keys (event_id, the identities of users and sessions) dirty about one page per
    # event once they outgrow a batch; a larger batch shares more of each page. 4,000 rather than 1,000
    # (500 before the raw queue had its own file): bench.digest_cpu, 300,000 events, 133 -> 114 us per
    # event (8,000: 100); bench.ingest, 150,000 events as fast as answered, 2 runs each alternated:
    # 8,393-8,423 -> 9,976-10,450 digested per second, digest CPU 112-113 -> 92-95 us per event, peak
    # memory 277 -> 302 MB.
    digest_batch_size: int = 4000
    # ... and at most this much raw payload per batch (at least one item): a batch of the largest events
    # (`max_event_bytes`) would otherwise hold gigabytes. 4,000 of bench.ingest's 2.1 KB events are 8.4 MB.
    digest_batch_bytes: int = 16 * 1024 * 1024
    # SQLite has a single writer per file: while the digest's transaction holds the main file's write lock
    # (from its first write to its commit) other writers wait; intake does not, as the raw queue has a file
    # of its own (`store.db.queue_database_path`). A target > 0 sizes SQLite batches to hold the lock about
    # this long (PostgreSQL has no such lock and always uses `digest_batch_size`). Off by default: measured
    # (bench.ingest, 20,000 events, machine loaded, when intake still shared the file), a 20 ms target shrank
    # batches to 50 and cut their lock hold from 210-310 ms to 61-79 ms, but raised digest CPU from 376-450
    # to 570-681 µs/event (each batch's writes and commit cost ~8-10 ms whatever its size) and lowered
    # digested/s from 591-880 to 371-499.
    digest_lock_target_ms: float = 0.0
    digest_min_batch_size: int = 50
    digest_interval_seconds: float = 0.2
    lease_seconds: float = 60.0
    detect_schedule: Literal["on", "off"] = "on"
    detect_interval_seconds: float = 30.0
    # Every worker records a heartbeat in the database this often; it counts as alive for
    # `worker_stale_after_seconds` after each, so `/healthz` on any API process sees a killed worker go.
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0)
    worker_stale_after_seconds: float = Field(default=30.0, gt=0)
    # `detector serve` starts a worker process that died again after this wait, doubled while it keeps dying
    # (up to 60 s) and reset once one has run a minute.
    worker_restart_backoff_seconds: float = Field(default=1.0, gt=0)
    # `/healthz` answers 503 once the oldest item waiting for digest is older than this: the worker is
    # stuck or far behind (bench.ingest's 60 s burst at full rate drained in under 4 minutes).
    health_max_queue_age_seconds: float = Field(default=300.0, gt=0)
    # SQLite: `/healthz` answers 503 when the file system holding the database has less free space than this
    # (a small write still succeeds on a full disk, into pages the WAL already holds; intake's would not).
    health_min_free_disk_mb: float = Field(default=64.0, ge=0)
    # While the database is restarting, unreachable, out of disk or locked, intake and the query API answer
    # 503 with this `Retry-After` (SDKs wait that long before sending again): a PostgreSQL restart or
    # failover takes seconds, and the API's pool reconnects on the first request after it.
    database_retry_after_seconds: int = Field(default=5, ge=1)
    # `/healthz` answers 503 while intake's last commit failed on the database, until one succeeds or this
    # long has passed without intake traffic to try again (then the health check's own write decides).
    health_intake_failure_seconds: float = Field(default=30.0, gt=0)
    # The worker deletes stored events whose minute is older than this (hourly, in batches); per-minute
    # counts, signatures and anomalies are kept, so detection and history are unchanged. At least
    # `max_event_age_days`, so an event intake still accepts finds its minute's events to count against.
    raw_event_retention_days: float = Field(default=90, gt=0)
    # ... checked this often by each worker (first at its start); a run deletes in batches of 5,000 rows
    # per transaction, so it never holds the write lock long.
    raw_event_retention_interval_seconds: float = Field(default=3600, gt=0)

    # alerts
    slack_webhook_url: str | None = None
    slack_bot_token: str | None = None
    slack_channel: str | None = None
    slack_api_url: str | None = None  # the Web API base (default https://slack.com/api/); for stand-ins
    slack_timeout_seconds: float = 5.0
    # The longest wait between two tries of an alert while Slack is down (the backoff doubles from 2 s up to
    # it): once Slack is back, a waiting alert goes out within this long. A 429's `Retry-After` is kept as is.
    slack_retry_max_seconds: float = Field(default=30.0, gt=0)

    # Sentry pull mode
    sentry_pull_base_url: str | None = None
    sentry_pull_token: str | None = None
    sentry_pull_org: str | None = None
    sentry_pull_projects: list[str] = Field(default_factory=list)
    sentry_pull_interval_seconds: float = 60.0

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(f"DETECTOR_DATABASE_URL must start with sqlite:// or postgresql+psycopg://, got {value!r}")
        if value.startswith("postgresql://"):
            return "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        origins = [str(o).strip().rstrip("/").lower() for o in items if str(o).strip()]
        for origin in origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(
                    f"DETECTOR_CORS_ALLOWED_ORIGINS: {origin!r} is not an origin (scheme://host[:port], or *)"
                )
        if not origins:
            raise ValueError("DETECTOR_CORS_ALLOWED_ORIGINS is empty: list origins, or * for any")
        return origins

    @model_validator(mode="after")
    def _heartbeat_within_staleness(self) -> Settings:
        if self.worker_stale_after_seconds <= self.worker_heartbeat_seconds:
            raise ValueError(
                f"DETECTOR_WORKER_STALE_AFTER_SECONDS ({self.worker_stale_after_seconds:g}) must be more than "
                f"DETECTOR_WORKER_HEARTBEAT_SECONDS ({self.worker_heartbeat_seconds:g}): a live worker would "
                "look gone between two heartbeats"
            )
        return self

    @model_validator(mode="after")
    def _retention_covers_accepted_ages(self) -> Settings:
        if self.raw_event_retention_days < self.max_event_age_days:
            raise ValueError(
                f"DETECTOR_RAW_EVENT_RETENTION_DAYS ({self.raw_event_retention_days:g}) must be at least "
                f"DETECTOR_MAX_EVENT_AGE_DAYS ({self.max_event_age_days:g}): events intake accepts are counted "
                "against the stored events of their minute"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
