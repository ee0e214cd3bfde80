"""One count series at a time: a (quasi-)Poisson CUSUM estimator and the notebook entry point ``score_series``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from detector.model.sequential import (
    baseline_rate_estimate,
    cusum_threshold,
    poisson_cusum_path,
    quasi_poisson_dispersion,
)


class PoissonCusum:
    """Page's CUSUM on the rate ratio of counts per unit exposure (river/scikit-learn style).

    ``__init__`` only stores parameters; :meth:`fit` learns ``baseline_rate_`` (unless given),
    ``dispersion_`` (unless given: the series' quasi-Poisson overdispersion, 1 unless significant; see
    :func:`detector.model.sequential.quasi_poisson_dispersion`) and ``threshold_``; :meth:`score`
    returns the statistic (high = anomalous); :meth:`predict` decides.
    The threshold is ``log(ARL0)`` with ``ARL0 = n_streams * steps_per_week / alarms_per_week``, a
    guaranteed bound (Lorden): the realised false-alarm rate is at most the budget, usually well below.
    """

    def __init__(
        self,
        *,
        rate_ratio: float = 2.0,
        alarms_per_week: float = 1.0,
        n_streams: int = 1,
        step_minutes: float = 1.0,
        baseline_rate: float | None = None,
        dispersion: float | None = None,
    ) -> None:
        self.rate_ratio = rate_ratio
        self.alarms_per_week = alarms_per_week
        self.n_streams = n_streams
        self.step_minutes = step_minutes
        self.baseline_rate = baseline_rate
        self.dispersion = dispersion

    def fit(self, counts: np.ndarray, exposure: np.ndarray | None = None) -> PoissonCusum:
        """Learn the baseline rate ``(sum(counts) + 1) / sum(exposure)`` and the threshold."""
        counts = np.asarray(counts, float)
        exposure = np.ones_like(counts) if exposure is None else np.asarray(exposure, float)
        if self.baseline_rate is not None:
            self.baseline_rate_ = float(self.baseline_rate)
        else:
            self.baseline_rate_ = float(baseline_rate_estimate(counts.sum(), exposure.sum()))
        if not self.baseline_rate_ > 0:
            raise ValueError("baseline rate must be positive (is the exposure zero?)")
        if self.dispersion is not None:
            if not self.dispersion >= 1.0:
                raise ValueError("dispersion must be at least 1")
            self.dispersion_ = float(self.dispersion)
        else:
            steps = np.flatnonzero(counts > 0)
            self.dispersion_ = float(
                quasi_poisson_dispersion(np.zeros(len(steps), np.int64), steps, counts[steps], exposure, 1)[0]
            )
        self.threshold_ = cusum_threshold(
            alarms_per_week=self.alarms_per_week, n_streams=self.n_streams, step_minutes=self.step_minutes
        )
        return self

    def score(self, counts: np.ndarray, exposure: np.ndarray | None = None) -> np.ndarray:
        """CUSUM statistic (nats) after each step; needs :meth:`fit` first."""
        counts = np.asarray(counts, float)
        exposure = np.ones_like(counts) if exposure is None else np.asarray(exposure, float)
        return poisson_cusum_path(
            counts / self.dispersion_, self.baseline_rate_ * exposure / self.dispersion_, self.rate_ratio
        )

    def predict(self, counts: np.ndarray, exposure: np.ndarray | None = None) -> np.ndarray:
        """True where the statistic is at or above ``threshold_``."""
        return self.score(counts, exposure) >= self.threshold_


def _step_minutes(index: pd.Index) -> float:
    if isinstance(index, pd.DatetimeIndex) and len(index) > 1:
        return float(pd.Series(index).diff().median() / pd.Timedelta(minutes=1))
    return 1.0


def score_series(
    counts: pd.Series,
    exposure: pd.Series | None = None,
    *,
    baseline_rate: float | None = None,
    alarms_per_week: float = 1.0,
    rate_ratio: float = 2.0,
    n_streams: int = 1,
    fit_fraction: float = 0.5,
    dispersion: float | None = None,
) -> pd.DataFrame:
    """Score one count series (e.g. a signature's affected sessions per minute) with a Poisson CUSUM.

    ``exposure`` (sessions started per step, same index) makes the test about the rate per session,
    so daily traffic swings are not alarms. Without ``baseline_rate`` the first ``fit_fraction`` of the
    series is the baseline. The step length is read from a DatetimeIndex (else one minute) and scales
    the threshold, which keeps the false alarms of ``n_streams`` such series at most ``alarms_per_week``.
    Without ``dispersion`` the baseline part's overdispersion is estimated and the test is quasi-Poisson.

    Returns a frame on ``counts.index`` with columns ``count``, ``exposure``, ``rate`` (count per
    exposure), ``baseline`` (the baseline rate), ``statistic`` (nats), ``threshold`` and ``alarm``.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> minutes = pd.date_range("2026-11-27", periods=600, freq="min", tz="UTC")
    >>> sessions = pd.Series(rng.poisson(100, 600), index=minutes)
    >>> rate = np.where(np.arange(600) < 540, 0.01, 0.05)   # 1% of sessions, then 5% from minute 540
    >>> errors = pd.Series(rng.binomial(sessions, rate), index=minutes)
    >>> scored = score_series(errors, sessions, alarms_per_week=1.0)
    >>> bool(scored["alarm"].iloc[:540].any())
    False
    >>> str(scored.index[scored["alarm"].to_numpy().argmax()].time())   # change at 09:00
    '09:04:00'
    """
    if exposure is None:
        exposure = pd.Series(1.0, index=counts.index)
    exposure = exposure.reindex(counts.index).fillna(0.0).astype(float)
    values = counts.astype(float).to_numpy()
    detector = PoissonCusum(
        rate_ratio=rate_ratio,
        alarms_per_week=alarms_per_week,
        n_streams=n_streams,
        step_minutes=_step_minutes(counts.index),
        baseline_rate=baseline_rate,
        dispersion=dispersion,
    )
    n_fit = max(1, math.floor(len(values) * fit_fraction))
    detector.fit(values[:n_fit], exposure.to_numpy()[:n_fit])
    statistic = detector.score(values, exposure.to_numpy())
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(exposure.to_numpy() > 0, values / exposure.to_numpy(), np.nan)
    return pd.DataFrame(
        {
            "count": values,
            "exposure": exposure.to_numpy(),
            "rate": rate,
            "baseline": detector.baseline_rate_,
            "dispersion": detector.dispersion_,
            "statistic": statistic,
            "threshold": detector.threshold_,
            "alarm": statistic >= detector.threshold_,
        },
        index=counts.index,
    )
