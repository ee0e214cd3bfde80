"""The shapes the native API answers, for /docs and its clients: each route names one in `responses`.

Documentation models: the routes build their answers in `detector/store` (shared with the CLI and the
notebooks) and send them as they are; tests/api/test_docs.py checks real answers against these models.
Extra keys are allowed, so a field added to an answer is never cut off by its documentation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class Project(Shape):
    id: int
    slug: str
    org: str
    platform: str
    public_key: str
    dsn: str
    repo_path: str | None
    rate_limit_per_minute: int | None
    created_at: datetime


class ProjectPage(Shape):
    items: list[Project]
    next: str | None


class Signature(Shape):
    id: int
    title: str
    type: str | None
    value: str | None
    culprit: str | None
    noise_class: str | None
    first_seen: datetime
    last_seen: datetime
    first_release: str | None
    events: int
    users: int
    releases: list[Any]


class SignaturePage(Shape):
    items: list[Signature]
    next: str | None


class MinuteCount(Shape):
    minute: datetime
    release: str
    environment: str
    events: int
    users: int
    sessions: int


class SeriesPage(Shape):
    items: list[MinuteCount]
    next: str | None


class Event(Shape):
    event_id: str
    signature_id: int
    release: str
    environment: str
    timestamp: datetime
    received_at: datetime
    level: str | None
    platform: str | None
    message: str | None
    exception: dict[str, Any] | None


class DeployRef(Shape):
    id: int
    release: str
    environment: str
    deployed_at: datetime
    sha: str | None


class Suspect(Shape):
    sha: str
    message: str
    author: str
    score: float
    evidence: list[str]


class Anomaly(Shape):
    id: int
    kind: str
    state: str
    signature_id: int | None
    title: str
    release: str | None
    environment: str | None
    deploy_id: int | None
    deploy: DeployRef | None
    minutes_after_deploy: float | None
    first_seen: datetime
    detected_at: datetime
    updated_at: datetime
    events: int
    users: int
    sessions_affected: int
    rate: float | None
    baseline_rate: float | None
    score: float
    suspects: list[Suspect]
    url: str


class AnomalyDetail(Anomaly):
    series: list[MinuteCount]


class AnomalyPage(Shape):
    items: list[Anomaly]
    next: str | None


class Change(Shape):
    anomaly_id: int
    change: str
    kind: str
    anomaly: Anomaly


class DetectAnswer(Shape):
    at: datetime
    changes: list[Change]


class CommitFile(Shape):
    path: str


class Commit(Shape):
    sha: str
    message: str
    author: Any
    timestamp: datetime | None
    files: list[CommitFile]


class Deploy(Shape):
    id: int
    project_id: int
    release: str
    environment: str
    name: str | None
    url: str | None
    sha: str | None
    source: str
    date_started: datetime | None
    date_finished: datetime | None
    deployed_at: datetime
    created_at: datetime
    commit_count: int
    commits: list[Commit]


class DeployPage(Shape):
    items: list[Deploy]
    next: str | None


class WebhookAnswer(Shape):
    """What the GitHub webhook did with a delivery that records no deploy (a deploy answers 201 `Deploy`)."""

    ok: bool | None = None
    event: str | None = None
    commits: int | None = None
    ignored: str | None = None


class VerdictSuspect(Shape):
    sha: str
    message: str | None = None


class VerdictAnomaly(Shape):
    id: int
    kind: str
    title: str
    crossed_at: datetime | None
    top_suspect: VerdictSuspect | None


class Verdict(Shape):
    """A deploy's verdict. `status` is `pending`, `failing`, `healthy` or `inconclusive`; `bound` is the
    anytime-valid upper confidence bound on the release's errored-session rate, `margin` what it must stay
    below (docs/MODEL.md, "Deploy verdicts")."""

    status: str
    reason: str
    deploy_id: int
    release: str
    environment: str
    deployed_at: datetime
    measured_at: datetime | None
    minutes_since_deploy: int
    sessions: int
    errored_sessions: int
    rate: float | None
    old_rate: float | None
    bound: float | None
    margin: float | None
    healthy_after_minutes: int | None
    anomalies: list[VerdictAnomaly]


def documented(model: type[BaseModel]) -> dict[str, Any]:
    """`@router.get(..., **documented(Model))`: /docs shows `Model`; the answer is sent as built."""
    return {"response_model": None, "responses": {200: {"model": model, "description": "Success"}}}
