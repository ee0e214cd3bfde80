"""What an alert shows, as plain values.

`AlertContent` is the one input of the Slack formatter (`detector.alerts.blocks`). The worker fills it
from an anomaly, its deploy and its ranked suspects; nothing here knows about the database or Slack.
Nested items are typed dicts so they stay plain, JSON-friendly values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NotRequired, TypedDict

AnomalyKind = Literal["new_signature", "regression", "release_error_rate", "spike"]
AnomalyState = Literal["open", "acknowledged", "resolved", "muted"]


class DeployRef(TypedDict):
    """The deploy an anomaly is linked to."""

    release: str
    environment: str
    deployed_at: datetime


class Segment(TypedDict):
    """Where the affected sessions concentrate.

    `share` is the fraction (0..1) of affected sessions with `column == value`. A `value` of None means
    the sessions are spread over every value of that column ("all browsers").
    """

    column: str
    value: str | None
    share: float


class TestedSegment(TypedDict):
    """The browser segment a segment test found the anomaly in ("Safari 14 only: 4.0% of its sessions").

    `rate` is the affected share (0..1) of the segment's sessions since the deploy, out of `sessions`."""

    segment: str
    rate: float
    sessions: int
    sessions_affected: int
    baseline_rate: NotRequired[float]


class SuspectCommit(TypedDict):
    """A ranked suspect commit; `evidence` holds whole sentences explaining the score."""

    sha: str
    message: str
    author: str
    score: float
    evidence: list[str]


class AlertLinks(TypedDict):
    """Where to look further: the anomaly in the HTTP API, and optionally in a UI."""

    api_url: str
    ui_url: NotRequired[str]


class ReleaseFollowUp(TypedDict):
    """What a later release says of the anomaly's signature: `present` (with its rate) or `absent`."""

    release: str
    status: str
    sessions: int
    affected: int
    rate: float
    same_rate: bool


@dataclass(frozen=True, kw_only=True)
class AlertContent:
    """Everything one alert shows.

        Rates are fractions of sessions in 0..1 (`0.021` is shown as "2.1%"); None means "not known" and
        the line is left out. `tested_segment` is set when the anomaly was found in one browser segment's own
    sessions. `minutes_after_deploy` is how long after `deploy.deployed_at` the anomaly
        was detected. Suspects are shown in descending `score` order.
    """

    anomaly_id: int | str
    kind: AnomalyKind
    state: AnomalyState
    title: str
    culprit: str | None
    project_slug: str
    release: str | None
    environment: str | None
    deploy: DeployRef | None
    minutes_after_deploy: float | None
    detected_at: datetime
    events: int
    users: int
    sessions_affected: int
    rate: float | None
    baseline_rate: float | None
    links: AlertLinks
    segments: list[Segment] = field(default_factory=list)
    tested_segment: TestedSegment | None = None
    suspects: list[SuspectCommit] = field(default_factory=list)
    evidence_unavailable: list[str] = field(default_factory=list)
    follow_up: ReleaseFollowUp | None = None
    """The latest later release's verdict, for a thread reply saying so."""
    ended_at: datetime | None = None
    """A spike's end: the first minute back at its usual rate (None while it runs, and for other kinds)."""
