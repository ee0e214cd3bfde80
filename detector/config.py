"""Settings, read once from `DETECTOR_*` environment variables and passed in from there."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    """The embedded default: a SQLite file in the current directory, created on first start."""
    return f"sqlite:///{Path.cwd() / 'detector.db'}"


class Settings(BaseSettings):
    """Everything the library, worker and API can be told. Build one with `Settings()` at the edge."""

    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    public_url: str = "http://127.0.0.1:8000"
    org: str = "default"
    environment: Literal["development", "production", "test"] = "development"

    # intake limits, like relay's defaults
    max_envelope_bytes: int = 20 * 1024 * 1024
    max_decoded_bytes: int = 50 * 1024 * 1024
    max_event_bytes: int = 1024 * 1024
    max_items_per_envelope: int = 1000
    default_rate_limit_per_minute: int = 0  # 0 = unlimited; projects can override
    max_event_age_days: int = 90

    # digest and worker
    # Items per digest transaction (with a lock target below, the largest). 1,000 rather than 500 since the
    # raw queue has its own SQLite file (intake no longer waits for a batch): bench.ingest --rate 5000,
    # 60,000 events, 2-3 runs each: drain after the last request 0.26-1.25 -> 0.27 s, digest CPU
    # 179-188 -> 161-180 us per event; closed loop 4,875-6,365 -> 6,177-6,187 digested per second.
    digest_batch_size: int = 1000
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
    raw_event_retention_days: int = 30

    # alerts
    slack_webhook_url: str | None = None
    slack_bot_token: str | None = None
    slack_channel: str | None = None
    slack_api_url: str | None = None  # the Web API base (default https://slack.com/api/); for stand-ins
    slack_timeout_seconds: float = 5.0

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

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
