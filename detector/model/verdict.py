"""A deploy's verdict, the answer CI and rollout controllers act on (pure; no database, no HTTP).

`pending` while the watch runs without enough evidence, `failing` once an anomaly of the deploy crossed,
`healthy` once the new release's errored-session rate is shown, anytime-valid, below the margin of the
old one's (with enough sessions and no new signature above the floor), `inconclusive` when the
watch ended without either. See docs/MODEL.md, "Deploy verdicts", for the statistic and its guarantees.

`healthy` rests on `detector.model.noninferiority`: an e-process against "the new rate is at or above the
margin of the old rate", both rates unknown (the old one seen on the baseline, the new one minute by
minute), valid at every minute at once (Ville's inequality), so polling the verdict every minute does not
inflate `alpha`, and `healthy` may stay once reached. Its tilt is tuned to the sample expected at
`horizon_minutes` (30), where it needs 2.45 standard errors of the difference between the two rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np

from detector.model.noninferiority import excess_upper_bound, first_below_margin, margin_of


class VerdictStatus(StrEnum):
    PENDING = "pending"
    FAILING = "failing"
    HEALTHY = "healthy"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class VerdictPolicy:
    """What a verdict is judged by; per project (`projects.gate_*`), with these defaults."""

    tolerance: float = 1.25
    """Relative margin: the new rate may reach this multiple of the old one."""
    absolute_margin: float = 0.005
    """Absolute margin: ... or the old rate plus this (0.005 = half a percentage point), whichever is larger."""
    min_sessions: int = 1000
    """Sessions of the new release needed before `healthy` (thin data is never healthy)."""
    watch_minutes: int = 60
    """After this long without `healthy` or `failing` the verdict is `inconclusive`."""
    alpha: float = 0.05
    """Probability that a release whose true rate is at or above the margin of the true old rate is ever
    called `healthy` (the old rate's own uncertainty included)."""
    horizon_minutes: int = 30
    """The statistic is tuned to be sharpest on the sample this many minutes of the release's busiest
    minute so far would bring: where `healthy` is wanted by (it stays valid at every other minute)."""
    new_signature_floor: float = 0.001
    """A new signature on more than this share of the release's sessions keeps it from `healthy`."""
    failing_alpha: float = 0.002
    """An anomaly makes the deploy `failing` once its evidence reaches log(1/failing_alpha) nats: an alert
    spends the project's weekly budget over its deploys, a rollback asks for this much per test."""

    def __post_init__(self) -> None:
        if self.tolerance < 1.0:
            raise ValueError("tolerance must be at least 1")
        if self.absolute_margin < 0:
            raise ValueError("absolute_margin must not be negative")
        if self.min_sessions < 1 or self.watch_minutes < 1 or self.horizon_minutes < 1:
            raise ValueError("min_sessions, watch_minutes and horizon_minutes must be at least 1")
        if not 0 < self.alpha < 1 or not 0 < self.failing_alpha < 1:
            raise ValueError("alpha and failing_alpha must be in (0, 1)")

    def tuning(self) -> dict[str, float | int]:
        """The arguments `noninferiority` takes from the policy."""
        return {
            "tolerance": self.tolerance,
            "absolute": self.absolute_margin,
            "alpha": self.alpha,
            "min_sessions": self.min_sessions,
            "horizon_minutes": self.horizon_minutes,
        }

    def margin(self, old_rate: np.ndarray | float) -> np.ndarray:
        """The rate the new release must be shown to stay below: max(old * tolerance, old + absolute)."""
        return margin_of(old_rate, self.tolerance, self.absolute_margin)


@dataclass(frozen=True)
class NewSignature:
    signature_id: int
    title: str
    sessions: float


@dataclass(frozen=True)
class ReleaseExposure:
    """What a pass measured of a deploy's release: its sessions minute by minute from the deploy minute
    (at most the watch), the baseline of the releases it replaced, and the signatures it brought."""

    deploy_id: int
    release: str
    environment: str
    deployed_at: datetime
    measured_at: datetime
    started: tuple[float, ...]
    errored: tuple[float, ...]
    baseline_started: float
    baseline_errored: float
    new_signatures: tuple[NewSignature, ...] = ()

    @property
    def sessions(self) -> float:
        return float(sum(self.started))

    @property
    def old_rate(self) -> float | None:
        if self.baseline_started <= 0:
            return None
        return self.baseline_errored / self.baseline_started


@dataclass(frozen=True)
class AnomalySummary:
    """An anomaly of the deploy, as the verdict names it."""

    id: int
    kind: str
    title: str
    crossed_at: datetime | None
    top_suspect: dict[str, object] | None = None
    evidence: float | None = None
    """The anomaly's e-process at its best, in nats (None for anomalies recorded before it was kept)."""


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    reason: str
    sessions: int
    errored_sessions: int
    rate: float | None
    old_rate: float | None
    bound: float | None
    margin: float | None
    minutes_since_deploy: int
    healthy_after_minutes: int | None = None
    anomalies: tuple[AnomalySummary, ...] = field(default_factory=tuple)


def first_healthy_minutes(
    started: np.ndarray,
    errored: np.ndarray,
    old_errored: np.ndarray | float,
    old_sessions: np.ndarray | float,
    policy: VerdictPolicy,
) -> np.ndarray:
    """For runs of per-minute counts (rows: runs, columns: minutes since the deploy) and each run's
    baseline, the first minute (index) at which the release is shown below the margin with at least
    `min_sessions`; -1 where it never is."""
    tuning = policy.tuning()
    alpha, min_sessions = tuning.pop("alpha"), tuning.pop("min_sessions")
    return first_below_margin(
        started, errored, old_errored, old_sessions, alpha=float(alpha), min_sessions=int(min_sessions), **tuning
    )


def first_healthy_minute(
    started: np.ndarray, errored: np.ndarray, old_errored: float, old_sessions: float, policy: VerdictPolicy
) -> int | None:
    """The first minute (index) at which the release is shown below the margin with enough sessions."""
    if len(started) == 0 or old_sessions <= 0:
        return None
    minute = int(
        first_healthy_minutes(np.asarray([started]), np.asarray([errored]), old_errored, old_sessions, policy)[0]
    )
    return None if minute < 0 else minute


def reported_bound(
    started: np.ndarray,
    errored: np.ndarray,
    old_errored: float,
    old_sessions: float,
    policy: VerdictPolicy,
    healthy_at: int | None,
) -> float:
    """The bound the verdict reports beside the margin ``g(old estimate)``: that margin plus the upper
    confidence bound on ``new rate - g(old rate)``, at its minimum over the minutes with enough sessions
    (every 10th, the last and the healthy one: any of a confidence sequence's sets is valid). Below the
    margin exactly when the release was shown below it; at most 1."""
    cum = np.cumsum(started)
    enough = np.flatnonzero(cum >= policy.min_sessions)
    if len(enough) == 0:
        enough = np.array([len(started) - 1])
    asked = set(enough[::10].tolist()) | {int(enough[-1])}
    if healthy_at is not None:
        asked.add(healthy_at)
    tuning = policy.tuning()
    alpha = float(tuning.pop("alpha"))
    excess = excess_upper_bound(
        started, errored, old_errored, old_sessions, np.array(sorted(asked)), alpha=alpha, **tuning
    )
    old = old_errored / old_sessions
    return float(min(float(policy.margin(old)) + float(excess.min()), 1.0))


def deploy_verdict(
    exposure: ReleaseExposure,
    anomalies: Sequence[AnomalySummary],
    policy: VerdictPolicy,
    at: datetime,
) -> Verdict:
    """The deploy's verdict at `at` from what the pass measured and the deploy's anomalies."""
    started = np.asarray(exposure.started, float)[: policy.watch_minutes]
    errored = np.asarray(exposure.errored, float)[: policy.watch_minutes]
    cum_sessions = np.cumsum(started)
    cum_errored = np.minimum(np.cumsum(errored), cum_sessions)
    sessions = int(cum_sessions[-1]) if len(cum_sessions) else 0
    bad = int(cum_errored[-1]) if len(cum_errored) else 0
    rate = bad / sessions if sessions else None
    errored = np.diff(cum_errored, prepend=0.0)
    old_rate = exposure.old_rate
    margin = bound = healthy_at = None
    base_errored = min(exposure.baseline_errored, exposure.baseline_started)
    minutes = max(int((at - exposure.deployed_at).total_seconds() // 60), 0)
    watch_over = at >= exposure.deployed_at + timedelta(minutes=policy.watch_minutes)

    def verdict(status: VerdictStatus, reason: str, healthy_after: int | None = None) -> Verdict:
        return Verdict(
            status=status,
            reason=reason,
            sessions=sessions,
            errored_sessions=bad,
            rate=rate,
            old_rate=old_rate,
            bound=bound,
            margin=margin,
            minutes_since_deploy=minutes,
            healthy_after_minutes=healthy_after,
            anomalies=tuple(anomalies),
        )

    floor = policy.new_signature_floor
    above_floor = [s for s in exposure.new_signatures if sessions and s.sessions / sessions > floor]
    if old_rate is not None:
        margin = float(policy.margin(old_rate))
        if sessions:
            if not above_floor and not anomalies:
                healthy_at = first_healthy_minute(started, errored, base_errored, exposure.baseline_started, policy)
            bound = reported_bound(started, errored, base_errored, exposure.baseline_started, policy, healthy_at)
    needed = math.log(1 / policy.failing_alpha)
    confirmed = [a for a in anomalies if a.evidence is None or a.evidence >= needed]
    if confirmed:
        first = confirmed[0]
        more = f" (and {len(confirmed) - 1} more)" if len(confirmed) > 1 else ""
        suspect = ""
        if first.top_suspect:
            summary = (str(first.top_suspect.get("message") or "").splitlines() or [""])[0]
            suspect = f"; top suspect {str(first.top_suspect.get('sha', ''))[:12]} {summary!r}"
        return verdict(VerdictStatus.FAILING, f"{_kind_phrase(first.kind)}: {first.title}{more}{suspect}.")
    if healthy_at is not None:
        at_healthy = cum_sessions[healthy_at]
        return verdict(
            VerdictStatus.HEALTHY,
            f"after {int(at_healthy)} sessions the errored-session rate is below {_pct(margin)} "
            f"with {1 - policy.alpha:.0%} confidence (the replaced releases ran {_pct(old_rate)}).",
            healthy_after=healthy_at + 1,
        )
    status = VerdictStatus.INCONCLUSIVE if watch_over else VerdictStatus.PENDING
    if anomalies:
        first = anomalies[0]
        return verdict(
            status,
            f"{'the watch ended' if watch_over else 'watching'}: {_kind_phrase(first.kind)} {first.title!r} was "
            f"alerted, its evidence ({first.evidence:.1f} nats) short of the {needed:.1f} a failing verdict needs.",
        )
    return verdict(status, _why_not_yet(exposure, policy, sessions, bound, margin, above_floor, watch_over))


def _why_not_yet(
    exposure: ReleaseExposure,
    policy: VerdictPolicy,
    sessions: int,
    bound: float | None,
    margin: float | None,
    above_floor: list[NewSignature],
    watch_over: bool,
) -> str:
    when = f"the {policy.watch_minutes}-minute watch ended" if watch_over else "watching"
    if margin is None:
        return f"{when}: no earlier release ran in {exposure.environment} to compare with."
    if above_floor:
        top = max(above_floor, key=lambda s: s.sessions)
        return f"{when}: new signature {top.title!r} is on {_pct(top.sessions / max(sessions, 1))} of sessions."
    if sessions < policy.min_sessions:
        return f"{when}: {sessions} of the {policy.min_sessions} sessions needed have run {exposure.release}."
    return f"{when}: the rate's upper bound {_pct(bound)} is not yet below the margin {_pct(margin)}."


def _kind_phrase(kind: str) -> str:
    return {
        "new_signature": "new error",
        "regression": "regressed error",
        "release_error_rate": "errored sessions up",
    }.get(kind, kind)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"
