"""A deploy's verdict, the answer CI and rollout controllers act on (pure; no database, no HTTP).

`pending` while the watch runs without enough evidence, `failing` once an anomaly of the deploy crossed,
`healthy` once an anytime-valid upper confidence bound on the new release's errored-session rate is
below the margin (with enough sessions and no new signature above the floor), `inconclusive` when the
watch ended without either. See docs/MODEL.md, "Deploy verdicts", for the statistic and its guarantees.

The bound is a one-sided confidence sequence for a Bernoulli rate built by inverting a family of
mixture likelihood-ratio test martingales (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon 2021,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2)): for each
candidate rate ``m``,

    M_t(m) = mean_r  r**S_t * ((1 - r m) / (1 - m))**(n_t - S_t)        r in ``LOWER_RATIOS`` (all < 1)

is a nonnegative martingale with mean 1 when the true rate is ``m`` (a supermartingale when it is above),
so by Ville's inequality ``P(exists t: M_t(p) >= 1/alpha) <= alpha`` at the true rate ``p``. ``M_t`` grows
with ``m``, so ``{m : M_t(m) < 1/alpha}`` is an interval ``[0, U_t)`` and ``U_t`` is an upper bound that
holds at every minute at once: polling it as often as one likes does not inflate ``alpha``, and its running
minimum is as valid (what the verdict reports).

The old rate is an estimate too: the margin is computed from its one-sided Clopper-Pearson lower bound at
``baseline_alpha``, and the sequence spends the rest of ``alpha``, so a release at or above the margin of
the true old rate is called healthy with probability at most ``alpha`` in all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np
from scipy.special import logsumexp
from scipy.stats import beta


class VerdictStatus(StrEnum):
    PENDING = "pending"
    FAILING = "failing"
    HEALTHY = "healthy"
    INCONCLUSIVE = "inconclusive"


LOWER_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.65, 0.8, 0.9)
"""Alternatives mixed by the bound, as shares of the tested rate: a release as good as the one it replaced
sits at 0.5-0.8 of the margin (0.5 at a 0.5 % base rate, where the absolute margin rules; 0.8 where the
relative one does), so the mixture puts its weight there."""


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
    """Probability that a release whose true rate is above the margin is ever called `healthy`: split
    between the baseline (`baseline_alpha`, a lower bound on the old rate) and the new release's bound."""
    baseline_alpha: float = 0.01
    """The part of `alpha` spent on the old rate, itself an estimate: the margin is computed from its
    one-sided Clopper-Pearson lower bound at this level, not from the estimate."""
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
        if self.min_sessions < 1 or self.watch_minutes < 1:
            raise ValueError("min_sessions and watch_minutes must be at least 1")
        if not 0 < self.alpha < 1 or not 0 < self.failing_alpha < 1:
            raise ValueError("alpha and failing_alpha must be in (0, 1)")
        if not 0 < self.baseline_alpha < self.alpha:
            raise ValueError("baseline_alpha must be in (0, alpha)")

    @property
    def release_alpha(self) -> float:
        """The part of `alpha` the new release's confidence sequence spends."""
        return self.alpha - self.baseline_alpha

    def old_rate_lower(self, errored: np.ndarray | float, sessions: np.ndarray | float) -> np.ndarray:
        """One-sided Clopper-Pearson lower bound on the old rate at `baseline_alpha` (0 without errors)."""
        k = np.asarray(errored, float)
        n = np.maximum(np.asarray(sessions, float), k)
        with np.errstate(invalid="ignore"):
            lower = beta.ppf(self.baseline_alpha, np.maximum(k, 1e-9), n - k + 1.0)
        return np.asarray(np.where(k > 0, lower, 0.0))

    def margin(self, old_rate: np.ndarray | float) -> np.ndarray:
        """The rate the new release must be shown to stay below: max(old * tolerance, old + absolute)."""
        old = np.asarray(old_rate, float)
        return np.asarray(np.minimum(np.maximum(old * self.tolerance, old + self.absolute_margin), 1.0))


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


def log_evidence_below(errored: np.ndarray, sessions: np.ndarray, rate: np.ndarray | float) -> np.ndarray:
    """log M_t(rate): evidence that the true errored-session rate is below `rate` (see the module doc)."""
    s = np.asarray(errored, float)[..., None]
    n = np.asarray(sessions, float)[..., None]
    m = np.clip(np.asarray(rate, float), 1e-12, 1 - 1e-12)[..., None]
    r = np.asarray(LOWER_RATIOS)
    terms = s * np.log(r) + (n - s) * (np.log1p(-r * m) - np.log1p(-m))
    return np.asarray(logsumexp(terms, axis=-1) - math.log(len(r)))


def upper_confidence_bound(errored: np.ndarray, sessions: np.ndarray, alpha: float, iterations: int = 50) -> np.ndarray:
    """U_t for each (errored, sessions) pair: the smallest rate whose evidence reaches log(1/alpha); 1 when
    none does. Vectorised bisection (log M_t grows with the rate)."""
    s = np.asarray(errored, float)
    n = np.maximum(np.asarray(sessions, float), s)
    threshold = math.log(1 / alpha)
    low = np.where(n > 0, s / np.maximum(n, 1.0), 0.0)
    high = np.full_like(low, 1.0 - 1e-9)
    reachable = log_evidence_below(s, n, high) >= threshold
    for _ in range(iterations):
        mid = (low + high) / 2
        above = log_evidence_below(s, n, mid) >= threshold
        high = np.where(above, mid, high)
        low = np.where(above, low, mid)
    return np.where(reachable, high, 1.0)


def first_healthy_minutes(
    cum_errored: np.ndarray, cum_sessions: np.ndarray, margins: np.ndarray, policy: VerdictPolicy
) -> np.ndarray:
    """For runs of cumulative counts (rows: runs, columns: minutes) and each run's margin, the first minute
    (index) at which the bound is below the margin with at least `min_sessions`; -1 where none is."""
    n = np.atleast_2d(np.asarray(cum_sessions, float))
    s = np.atleast_2d(np.asarray(cum_errored, float))
    m = np.broadcast_to(np.asarray(margins, float).reshape(-1, 1), n.shape)
    below = (n >= policy.min_sessions) & (log_evidence_below(s, n, m) >= math.log(1 / policy.release_alpha))
    return np.where(below.any(axis=1), below.argmax(axis=1), -1)


def first_healthy_minute(
    cum_errored: np.ndarray, cum_sessions: np.ndarray, margin: float, policy: VerdictPolicy
) -> int | None:
    """The first minute (index) at which the bound is below the margin with enough sessions, if any."""
    if len(cum_sessions) == 0:
        return None
    minute = int(first_healthy_minutes(cum_errored, cum_sessions, np.array([margin]), policy)[0])
    return None if minute < 0 else minute


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
    bound = None
    if sessions:
        # the running minimum: an intersection of a confidence sequence's sets is one too
        seen = cum_sessions > 0
        bound = float(upper_confidence_bound(cum_errored[seen], cum_sessions[seen], policy.release_alpha).min())
    old_rate = exposure.old_rate
    margin = None
    if old_rate is not None:
        margin = float(policy.margin(policy.old_rate_lower(exposure.baseline_errored, exposure.baseline_started)))
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
    floor = policy.new_signature_floor
    above_floor = [s for s in exposure.new_signatures if sessions and s.sessions / sessions > floor]
    healthy_at = None
    if margin is not None and not above_floor and not anomalies:
        healthy_at = first_healthy_minute(cum_errored, cum_sessions, margin, policy)
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
