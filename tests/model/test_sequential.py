from __future__ import annotations

import itertools
import math

import numpy as np

from detector.model.sequential import (
    MINUTES_PER_WEEK,
    binomial_glr_bound,
    conditional_log_lr_increments,
    count_alarm_excursions,
    cusum_threshold,
    eprocess_threshold,
    group_starts,
    grouped_cumsum,
    mixture_log_evidence,
    mixture_log_evidence_vs_estimate,
    poisson_cusum_path,
    sparse_poisson_cusum,
)


def test_cusum_threshold_is_log_arl0():
    h = cusum_threshold(alarms_per_week=1.0, n_streams=100)
    assert math.isclose(h, math.log(100 * MINUTES_PER_WEEK))
    # more streams or a smaller budget need more evidence
    assert cusum_threshold(alarms_per_week=0.5, n_streams=100) > h
    assert cusum_threshold(alarms_per_week=1.0, n_streams=1000) > h


def test_eprocess_threshold_spends_alpha_over_tests():
    assert math.isclose(eprocess_threshold(alarms_per_week=0.25, tests_per_week=200), math.log(800))


def test_poisson_cusum_hand_computed():
    # ratio 2, expected 1 per step: increment = x*log2 - 1
    path = poisson_cusum_path(np.array([0, 3, 3, 0, 0, 0]), np.ones(6), 2.0)
    log2 = math.log(2)
    expected = [0.0, 3 * log2 - 1, 6 * log2 - 2, 6 * log2 - 3, 6 * log2 - 4, 0.0]
    np.testing.assert_allclose(path, np.maximum(expected, 0.0))


def test_excursions_counted_once_each():
    statistic = np.array([0, 1, 5, 6, 5, 0, 0, 7, 0, 3])
    assert count_alarm_excursions(statistic, 5.0) == 2


def test_sparse_cusum_matches_dense():
    rng = np.random.default_rng(1)
    exposure = rng.poisson(50, 300).astype(float)
    counts = rng.poisson(0.02 * exposure * np.where(np.arange(300) > 200, 3, 1)).astype(float)
    dense = poisson_cusum_path(counts, 0.02 * exposure, 2.0)
    rows = np.flatnonzero(counts)
    cum = np.cumsum(exposure)
    before = np.concatenate(([0.0], cum))[rows]
    start = group_starts(np.zeros(len(rows)))
    sparse = sparse_poisson_cusum(counts[rows], 0.02 * before, 0.02 * cum[rows], start, 2.0)
    np.testing.assert_allclose(sparse.statistic, dense[rows])
    # an excursion starts wherever the dense statistic touched zero since the previous row
    touched = [bool(dense[a:b].min() == 0) for a, b in itertools.pairwise(rows)]
    assert sparse.excursion_start.tolist() == [True, *touched]


def test_grouped_cumsum_restarts():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    start = np.array([True, False, True, False])
    np.testing.assert_allclose(grouped_cumsum(values, start), [1, 3, 3, 7])


def test_mixture_is_one_sided():
    ratios = np.array([1.5, 2, 5, 20])
    # fewer events than expected never counts as evidence of a rise
    assert mixture_log_evidence(np.array([0.0]), np.array([50.0]), ratios)[0] < 0
    assert mixture_log_evidence(np.array([30.0]), np.array([5.0]), ratios)[0] > 10


def test_conditional_increments_ignore_common_rises():
    ratios = np.array([2.0, 5.0])
    share = np.array([0.5])
    same = conditional_log_lr_increments(np.array([50.0]), np.array([50.0]), share, ratios)
    worse = conditional_log_lr_increments(np.array([50.0]), np.array([5.0]), share, ratios)
    assert (same < 0).all()
    assert (worse > 5).all()
    # no old-release exposure: no information either way
    np.testing.assert_allclose(
        conditional_log_lr_increments(np.array([9.0]), np.array([0.0]), np.array([1.0]), ratios), 0.0, atol=1e-12
    )


RATIOS = np.array([1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0])


def test_evidence_against_an_estimated_rate_tends_to_the_known_rate_evidence():
    x, n = np.array([0.0, 3.0, 12.0, 40.0]), np.array([100.0, 100.0, 100.0, 400.0])
    known = mixture_log_evidence(x, 0.02 * n, RATIOS)
    huge = mixture_log_evidence_vs_estimate(x, n, 0.02 * 1e9, 1e9, RATIOS)
    short = mixture_log_evidence_vs_estimate(x, n, 0.02 * 1e3, 1e3, RATIOS)
    assert np.allclose(huge, known, atol=1e-4)
    # a short baseline is weaker evidence where there is evidence at all
    assert (short[known > 1.0] < known[known > 1.0]).all()
    assert (binomial_glr_bound(x, n, 0.02 * 1e3, 1e3) >= short - 1e-9).all()


def test_a_short_baseline_that_ran_low_does_not_make_false_alarms():
    # null: baseline and tested stream share the rate; the baseline is as long as the test (an hour of a
    # release at 100 sessions/min, 3 % errored). Ville: P(ever >= log 20) <= 1/20.
    rng = np.random.default_rng(4)
    trials, minutes, per_minute, rate = 20_000, 60, 100.0, 0.03
    baseline = rng.poisson(rate * per_minute * minutes, size=trials) + 1.0
    counts = np.cumsum(rng.poisson(rate * per_minute, size=(trials, minutes)), axis=1).ravel()
    exposure = np.tile(per_minute * np.arange(1, minutes + 1), trials)
    a = np.repeat(baseline, minutes)
    b = per_minute * minutes
    aware = mixture_log_evidence_vs_estimate(counts, exposure, a, b, RATIOS).reshape(trials, minutes)
    plug_in = mixture_log_evidence(counts, a / b * exposure, RATIOS).reshape(trials, minutes)
    h = math.log(20)
    aware_rate = (aware.max(axis=1) >= h).mean()
    plug_in_rate = (plug_in.max(axis=1) >= h).mean()
    assert aware_rate <= 1 / 20
    assert plug_in_rate > 2 * aware_rate  # treating the estimate as the truth is what this fixes
