"""The verdict's statistic (`detector.model.noninferiority`) on hand-made counts: the old rate's uncertainty
counts, the reported bound agrees with the test, and a baseline without sessions is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.model.noninferiority import excess_upper_bound, first_below_margin, log_evidence_below_margin

TUNING = {"tolerance": 1.25, "absolute": 0.005, "min_sessions": 1000, "horizon_minutes": 30}


def flat(per_minute: float, rate: float, minutes: int = 60) -> tuple[np.ndarray, np.ndarray]:
    return np.full((1, minutes), per_minute), np.full((1, minutes), per_minute * rate)


def test_evidence_grows_with_the_new_sessions_and_with_the_baseline() -> None:
    started, errored = flat(300, 0.02)
    small = log_evidence_below_margin(started, errored, 120, 6_000, alpha=0.05, **TUNING)[0]
    large = log_evidence_below_margin(started, errored, 720, 36_000, alpha=0.05, **TUNING)[0]
    assert large[-1] > large[20] > large[5]  # more of the new release, more evidence
    assert np.all(large[10:] > small[10:])  # the same old rate known from six times the sessions: more
    # a rate at the margin gathers none worth the name
    at_margin = log_evidence_below_margin(*flat(300, 0.025), 720, 36_000, alpha=0.05, **TUNING)[0]
    assert at_margin.max() < math.log(1 / 0.05)


def test_the_excess_bound_is_below_zero_exactly_where_the_test_passes() -> None:
    started, errored = flat(300, 0.02)
    log_e = log_evidence_below_margin(started, errored, 720, 36_000, alpha=0.05, **TUNING)[0]
    passed = np.flatnonzero(log_e >= math.log(20))
    assert 0 < len(passed) < 60  # not at first, then from some minute on
    minutes = np.array([int(passed[0]) - 1, int(passed[0]), 59])
    bound = excess_upper_bound(started[0], errored[0], 720, 36_000, minutes, alpha=0.05, **TUNING)
    assert bound[0] > 0 and bound[1] <= 0 and bound[2] < bound[1]
    assert bound[2] > 0.02 - 0.025  # it still covers the truth, new rate - margin = -0.5 points


def test_the_first_minute_below_the_margin_needs_the_minimum_sessions() -> None:
    started, errored = flat(300, 0.0, minutes=10)
    first = first_below_margin(started, errored, 360, 36_000, alpha=0.05, **{**TUNING, "min_sessions": 2_400})
    assert first[0] == 7  # 0 errors clear the margin at once, but 2,400 sessions take 8 minutes


def test_a_baseline_without_sessions_is_refused() -> None:
    with pytest.raises(ValueError, match="baseline"):
        log_evidence_below_margin(*flat(300, 0.02), 0, 0, alpha=0.05, **TUNING)
