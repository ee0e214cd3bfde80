from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector.model import PoissonCusum, score_series, segments_over_represented
from detector.model.oracle import OracleCusum


def test_estimator_learns_baseline_and_separates_scoring_from_deciding():
    counts = np.array([1, 0, 2, 1, 1, 0, 1, 1])
    exposure = np.full(8, 100.0)
    detector = PoissonCusum(alarms_per_week=1.0)
    assert not hasattr(detector, "baseline_rate_")
    detector.fit(counts, exposure)
    assert detector.baseline_rate_ == pytest.approx((7 + 1) / 800)
    scores = detector.score(np.array([0, 0, 30, 30]), np.full(4, 100.0))
    assert scores[0] == 0.0 and scores[-1] > scores[-2] > 0
    assert detector.predict(np.array([0, 0, 30, 30]), np.full(4, 100.0)).tolist() == [False, False, True, True]


def test_score_series_uses_exposure_not_raw_counts():
    minutes = pd.date_range("2026-11-27", periods=240, freq="min", tz="UTC")
    # traffic triples in the second half, the error rate per session does not change
    sessions = pd.Series(np.where(np.arange(240) < 120, 50, 150), index=minutes)
    errors = pd.Series(np.where(np.arange(240) < 120, 1, 3), index=minutes)
    with_exposure = score_series(errors, sessions)
    without = score_series(errors)
    assert not with_exposure["alarm"].any()
    assert without["alarm"].any()
    assert list(with_exposure.columns) == [
        "count",
        "exposure",
        "rate",
        "baseline",
        "dispersion",
        "statistic",
        "threshold",
        "alarm",
    ]


def test_oracle_detection_delay_and_tuning():
    exposure = np.full(MINUTES := 60, 100.0)
    oracle = OracleCusum.tuned(
        rate_before=0.01, rate_after=0.05, exposure_per_minute=exposure, alarms_per_week=1.0, n_weeks=4, seed=1
    )
    assert 0 < oracle.threshold <= np.log(7 * 24 * 60)
    counts = np.r_[np.ones(30), np.full(MINUTES - 30, 5.0)]
    delay = oracle.detection_delay(counts, exposure, change_index=30)
    assert delay is not None and 1 <= delay <= 5
    assert oracle.detection_delay(np.ones(MINUTES), exposure, change_index=30) is None


def test_segments_over_represented_names_the_crowded_route():
    rng = np.random.default_rng(5)
    population = pd.DataFrame(
        {
            "route": rng.choice(
                ["/billing", "/home", "/settings", "/docs", "/team"], 5000, p=[0.2, 0.4, 0.2, 0.1, 0.1]
            ),
            "browser": rng.choice(["Chrome", "Firefox", "Safari"], 5000, p=[0.6, 0.2, 0.2]),
        }
    )
    affected = population.sample(200, random_state=1).assign(
        route=np.where(rng.random(200) < 0.92, "/billing", "/home")
    )
    segments = segments_over_represented(affected, population)
    assert [(s["column"], s["value"]) for s in segments] == [("route", "/billing")]
    assert segments[0]["share"] == pytest.approx(0.92, abs=0.05)
    assert segments[0]["baseline_share"] == pytest.approx(0.2, abs=0.03)
    assert segments[0]["lift"] > 4
    assert segments_over_represented(affected.iloc[:0], population) == []
