"""The benchmark's yardstick: a CUSUM that knows the true rates before and after the change.

No real detector knows the post-change rate, so this oracle's detection delay at a given false-alarm
rate is a floor for what any detector can reach on the same data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detector.model.sequential import MINUTES_PER_WEEK, count_alarm_excursions, poisson_cusum_path


@dataclass(frozen=True)
class OracleCusum:
    """Poisson CUSUM of ``rate_after`` against ``rate_before`` (per unit exposure) with threshold ``h``.

    Build it with :meth:`tuned` to pick ``threshold`` from a false-alarm rate.
    """

    rate_before: float
    rate_after: float
    threshold: float

    def __post_init__(self) -> None:
        if not 0 < self.rate_before < self.rate_after:
            raise ValueError("the oracle needs 0 < rate_before < rate_after")

    @property
    def rate_ratio(self) -> float:
        return self.rate_after / self.rate_before

    def statistic(self, counts: np.ndarray, exposure: np.ndarray) -> np.ndarray:
        """CUSUM statistic after each minute (nats)."""
        return poisson_cusum_path(
            np.asarray(counts, float), self.rate_before * np.asarray(exposure, float), self.rate_ratio
        )

    def detection_delay(self, counts: np.ndarray, exposure: np.ndarray, change_index: int) -> float | None:
        """Minutes from ``change_index`` to the first alarm at or after it (1 = alarm in the change's own
        minute); ``None`` if it never alarms. The statistic is restarted at the change so earlier
        evidence (or a false alarm) does not count."""
        statistic = self.statistic(np.asarray(counts)[change_index:], np.asarray(exposure)[change_index:])
        alarms = np.flatnonzero(statistic >= self.threshold)
        return float(alarms[0] + 1) if len(alarms) else None

    @classmethod
    def tuned(
        cls,
        *,
        rate_before: float,
        rate_after: float,
        exposure_per_minute: np.ndarray,
        alarms_per_week: float,
        n_weeks: int = 20,
        seed: int = 0,
    ) -> OracleCusum:
        """Oracle whose threshold gives ``alarms_per_week`` false alarms on null data, by simulation.

        ``exposure_per_minute`` is repeated to fill ``n_weeks`` of Poisson(rate_before * exposure)
        counts; the threshold is the smallest grid value (0.05 nats steps, never below the analytic
        ``log(ARL0)`` minus 5) whose alarm excursions per week do not exceed the budget.
        """
        rng = np.random.default_rng(seed)
        steps = n_weeks * MINUTES_PER_WEEK
        exposure = np.resize(np.asarray(exposure_per_minute, float), steps)
        counts = rng.poisson(rate_before * exposure)
        statistic = poisson_cusum_path(counts, rate_before * exposure, rate_after / rate_before)
        upper = math.log(MINUTES_PER_WEEK / alarms_per_week)
        for threshold in np.arange(max(upper - 5.0, 0.05), upper + 0.05, 0.05):
            if count_alarm_excursions(statistic, float(threshold)) / n_weeks <= alarms_per_week:
                return cls(rate_before, rate_after, float(threshold))
        return cls(rate_before, rate_after, upper)
