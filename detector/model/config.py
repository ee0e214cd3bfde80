"""Parameters of the detection pass (plain values, no settings object)."""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("new_signature", "regression", "release_error_rate", "spike")

DEFAULT_SUPPRESSED_NOISE_CLASSES = frozenset({"resize_observer", "script_error", "extension", "bot"})
DEFAULT_GRACE_NOISE_CLASSES = frozenset({"chunk_load", "network"})


def _equal_budget_shares() -> dict[str, float]:
    return dict.fromkeys(KINDS, 1.0 / len(KINDS))


@dataclass(frozen=True)
class DetectorConfig:
    """Everything :func:`detector.model.detect_anomalies` needs besides the data.

    Times are in minutes unless the name says otherwise; rates are per session.
    """

    lookback_days: float = 14.0
    """Pre-deploy baseline span: a signature absent from it is *new*; known ones get their rate from it."""

    alarms_per_week: float = 1.0
    """False-alarm budget per project (all environments, all kinds) per week, if nothing changed."""

    budget_shares: dict[str, float] = field(default_factory=_equal_budget_shares)
    """How ``alarms_per_week`` is split between the four kinds (shares summing to 1)."""

    min_users: int = 2
    """Distinct users required before any finding (one user's error loop is not an outage)."""

    min_sessions: int = 2
    """Distinct affected sessions required before any finding."""

    deploy_watch_minutes: int = 24 * 60
    """How long after a deploy its release is tested for new signatures, regressions, error rate."""

    deploys_per_week: float | None = None
    """Deploys per week used for alpha-spending; ``None`` estimates it from ``deploys`` in the lookback
    (at least 1)."""

    new_signature_streams_per_deploy: float = 20.0
    """Assumed number of new signatures tested per deploy by the segment tests (the larger of this and
    the actual number is used); the overall tests rank them by appearance instead (MODEL.md)."""

    new_signature_floor_rate: float = 0.001
    """Null rate of a new signature: below this share of sessions a new error is not worth a page."""

    rate_ratios: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
    """Grid of alternative rate ratios mixed (uniform weights) by the deploy-anchored e-processes."""

    release_rate_ratios: tuple[float, ...] = (1.05, 1.1, 1.2, 1.35, 1.5, 2.0, 3.0, 5.0, 10.0)
    """Grid of the release error rate's mixture. Finer near 1 than ``rate_ratios``: a release that makes
    every error a little more frequent raises the errored share by a few tens of percent, and a
    component above the true ratio (1.25 against a true 1.1) has negative drift and never crosses."""

    release_errors_exclude_noise: bool = True
    """The release error rate counts sessions errored by app errors: sessions of signatures with a noise
    class or without in-app frames are subtracted from each minute's errored sessions (for the new
    release and its baseline alike). Noise dilutes a release-wide rise (the errored share of a frontend
    is often half noise)."""

    baseline_max_minutes: int = 6 * 60
    """Longest baseline of a deploy test: the replaced releases' sessions at most this long before the
    deploy (since the previous deploy when that holds ``baseline_min_sessions``). A bug the previous
    release brought is in its baseline, so an unchanged rate is not a regression of the next one."""

    onset_evidence_factor: float = 1000.0
    """Likelihood ratio by which "the rate rose at some moment for every release alike" must beat "the
    deploy's releases rose from the deploy" before a deploy finding is reported as a spike instead."""

    spike_rate_ratio: float = 2.0
    """Alternative rate ratio of the spike CUSUM (the rise it is tuned to detect fastest), and of its end
    test (back at the baseline against still this many times it)."""
    spike_steep_ratios: tuple[float, ...] = (10.0, 100.0)
    """Further CUSUMs beside it, each tuned to a steeper rise (an outage's 5xx at 100x their usual rate
    cross in a minute or two, where the 2x CUSUM needs a dozen); the threshold pays log(1 + len)."""

    spike_window_minutes: int = 6 * 60
    """The spike CUSUM starts at most this long before ``at``; its baseline is the lookback before."""

    spike_dispersion: bool = True
    """Estimate each stream's overdispersion from its baseline and test in its units (quasi-Poisson);
    False tests every stream as Poisson (the detector before real, bursty counts were measured)."""

    spike_step_minutes: int | None = None
    """Length of one step of the spike CUSUM's false-alarm budget; None reads it off the data (the usual
    gap between minutes with session counts: 1 for per-minute counts, 60 for hourly series)."""

    control_min_share: float = 0.1
    """Minimum share of post-deploy sessions on other releases for the concurrent control to count."""

    control_min_sessions: int = 100
    """Minimum post-deploy sessions on other releases for the concurrent control to count."""

    baseline_min_sessions: int = 100
    """Minimum baseline sessions to test a rate against it (regression, error rate, spike)."""

    spike_baseline_z: float = 2.0
    """The spike CUSUM tests against an upper confidence bound of each signature's baseline rate,
    ``(a + z^2/2 + z sqrt(a + z^2/4)) / b`` for ``a`` affected (plus one) in ``b`` sessions: a short
    or sparse baseline that happened to run low is not taken for the truth (0: the plain estimate)."""

    suppressed_noise_classes: frozenset[str] = DEFAULT_SUPPRESSED_NOISE_CLASSES
    """Noise classes that never raise findings (browser noise, extensions, bots)."""

    grace_noise_classes: frozenset[str] = DEFAULT_GRACE_NOISE_CLASSES
    """Noise classes whose counts are ignored within ``deploy_grace_minutes`` after any deploy
    (stale chunks and aborted requests are expected while clients switch bundles)."""

    deploy_grace_minutes: int = 15
    """Length of the post-deploy grace window for ``grace_noise_classes``."""

    noisy_evidence_factor: float = 1000.0
    """Extra evidence (likelihood-ratio factor) required from signatures with a noise class that is not
    suppressed, or without in-app frames (third-party scripts)."""

    segment_min_share: float = 0.01
    """Segment tests: a browser segment is tested when it holds at least this share of the release's
    sessions since the deploy (smaller ones are too small to page for)."""

    segment_min_concentration: float = 0.75
    """Segment tests: a signature is reported from a segment ("Safari 14 only") when that segment holds at
    least this share of its affected sessions since the deploy, when its test crosses and at the pass."""

    segment_min_lift: float = 2.0
    """Segment tests: ... and at least this many times the segment's share of the release's sessions (a
    segment holding most of the traffic holds most of any error, which does not make it that segment's)."""

    def __post_init__(self) -> None:
        if self.alarms_per_week <= 0:
            raise ValueError("alarms_per_week must be positive")
        if set(self.budget_shares) != set(KINDS) or any(v <= 0 for v in self.budget_shares.values()):
            raise ValueError(f"budget_shares needs a positive share for each of {KINDS}")
        if abs(sum(self.budget_shares.values()) - 1.0) > 1e-9:
            raise ValueError("budget_shares must sum to 1")
        if not self.rate_ratios or min(self.rate_ratios) <= 1.0:
            raise ValueError("rate_ratios must be non-empty and all above 1")
        if not self.release_rate_ratios or min(self.release_rate_ratios) <= 1.0:
            raise ValueError("release_rate_ratios must be non-empty and all above 1")
        if self.spike_rate_ratio <= 1.0 or any(r <= 1.0 for r in self.spike_steep_ratios):
            raise ValueError("spike_rate_ratio and spike_steep_ratios must exceed 1")
        if self.noisy_evidence_factor < 1.0:
            raise ValueError("noisy_evidence_factor must be at least 1")
        if self.onset_evidence_factor < 1.0:
            raise ValueError("onset_evidence_factor must be at least 1")
        if self.baseline_max_minutes <= 0:
            raise ValueError("baseline_max_minutes must be positive")
        if self.spike_step_minutes is not None and self.spike_step_minutes < 1:
            raise ValueError("spike_step_minutes must be at least 1")
        if not 0 < self.segment_min_share <= 1 or not 0 < self.segment_min_concentration <= 1:
            raise ValueError("segment_min_share and segment_min_concentration must be in (0, 1]")
        if self.spike_baseline_z < 0:
            raise ValueError("spike_baseline_z must not be negative")
        if min(self.lookback_days, self.deploy_watch_minutes, self.spike_window_minutes) <= 0:
            raise ValueError("lookback_days, deploy_watch_minutes and spike_window_minutes must be positive")

    def budget(self, kind: str) -> float:
        """False alarms per week allotted to ``kind``."""
        return self.alarms_per_week * self.budget_shares[kind]
