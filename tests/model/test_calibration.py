"""Null data (no change) with diurnal exposure: false alarms stay within the configured budget."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from detector.model.config import DetectorConfig
from detector.model.sequential import (
    MINUTES_PER_WEEK,
    count_alarm_excursions,
    cusum_threshold,
    eprocess_threshold,
    mixture_log_evidence,
    mixture_log_evidence_vs_estimate,
    poisson_cusum_path,
)
from detector.model.simulate import diurnal_sessions

RATIOS = np.array([1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0])


def _upper(expected: float) -> float:
    """Upper end of a 3-sigma Poisson band around ``expected``."""
    return expected + 3.0 * math.sqrt(expected)


def test_spike_cusum_alarm_rate_within_budget_over_project_weeks():
    rng = np.random.default_rng(11)
    weeks, streams, budget = 4, 40, 40.0
    minutes = pd.date_range("2026-11-02", periods=weeks * MINUTES_PER_WEEK, freq="min", tz="UTC")
    exposure = diurnal_sessions(minutes, 30.0)
    rates = rng.choice([0.002, 0.02, 0.1], size=streams)
    counts = rng.poisson(rates[:, None] * exposure[None, :])
    statistic = poisson_cusum_path(counts, rates[:, None] * exposure[None, :], 2.0)
    threshold = cusum_threshold(alarms_per_week=budget, n_streams=streams)
    per_week = count_alarm_excursions(statistic, threshold) / weeks
    assert per_week * weeks <= _upper(budget * weeks)
    # the bound is conservative, not vacuous: halving the evidence needed gives many more alarms
    assert count_alarm_excursions(statistic, threshold / 2) > 10 * max(per_week * weeks, 1)


def test_the_spike_cusums_of_every_ratio_together_keep_the_budget():
    # the detector alarms when any of its CUSUMs (2x and the steep ratios) crosses; paying log(number of
    # ratios) on the threshold keeps their alarms together within one budget (union bound)
    rng = np.random.default_rng(13)
    weeks, streams, budget = 4, 40, 40.0
    config = DetectorConfig()
    ratios = (config.spike_rate_ratio, *config.spike_steep_ratios)
    assert len(ratios) > 1
    minutes = pd.date_range("2026-11-02", periods=weeks * MINUTES_PER_WEEK, freq="min", tz="UTC")
    exposure = diurnal_sessions(minutes, 30.0)
    rates = rng.choice([0.0002, 0.002, 0.02, 0.1], size=streams)
    expected = rates[:, None] * exposure[None, :]
    counts = rng.poisson(expected)
    threshold = cusum_threshold(alarms_per_week=budget, n_streams=streams) + math.log(len(ratios))
    alarms = [count_alarm_excursions(poisson_cusum_path(counts, expected, k), threshold) for k in ratios]
    assert sum(alarms) <= _upper(budget * weeks), alarms
    # the bound is conservative, not vacuous: half the evidence gives many more alarms
    halved = sum(count_alarm_excursions(poisson_cusum_path(counts, expected, k), threshold / 2) for k in ratios)
    assert halved > 10 * max(sum(alarms), 1)


def test_deploy_eprocess_false_alarm_probability_within_alpha():
    rng = np.random.default_rng(12)
    tests, budget, tests_per_week = 1000, 30.0, 300.0
    alpha = budget / tests_per_week
    threshold = eprocess_threshold(alarms_per_week=budget, tests_per_week=tests_per_week)
    minutes = pd.date_range("2026-11-02 09:00", periods=12 * 60, freq="min", tz="UTC")
    exposure = diurnal_sessions(minutes, 20.0)
    rates = rng.choice([0.001, 0.01, 0.05], size=tests)
    counts = rng.poisson(rates[:, None] * exposure[None, :]).astype(float)
    cum_counts = np.cumsum(counts, axis=1)
    cum_expected = rates[:, None] * np.cumsum(exposure)[None, :]
    rows = counts > 0  # the mixture only rises at minutes with events
    log_e = np.full(counts.shape, -np.inf)
    log_e[rows] = mixture_log_evidence(cum_counts[rows], cum_expected[rows], RATIOS)
    alarmed = int((log_e.max(axis=1) >= threshold).sum())
    assert alarmed <= _upper(alpha * tests)


def test_release_error_rate_eprocess_with_its_fine_grid_within_alpha():
    """The release error rate's e-process (ratios down to 1.05) against a baseline estimated from an
    hour of the previous release, on null binomial data: crossings within alpha, and not vacuous."""
    rng = np.random.default_rng(13)
    tests, alpha, share = 2000, 0.02, 0.03
    ratios = np.asarray(DetectorConfig().release_rate_ratios)
    threshold = eprocess_threshold(alarms_per_week=alpha, tests_per_week=1.0)
    baseline_started = rng.poisson(100.0, size=(tests, 60)).sum(axis=1).astype(float)
    baseline_errored = rng.binomial(baseline_started.astype(int), share) + 1.0
    started = rng.poisson(100.0, size=(tests, 12 * 60)).astype(float)
    errored = rng.binomial(started.astype(int), share).astype(float)
    cum_started, cum_errored = np.cumsum(started, axis=1), np.cumsum(errored, axis=1)
    log_e = mixture_log_evidence_vs_estimate(
        cum_errored.ravel(),
        cum_started.ravel(),
        np.repeat(baseline_errored, 12 * 60),
        np.repeat(baseline_started, 12 * 60),
        ratios,
    ).reshape(tests, -1)
    best = log_e.max(axis=1)
    assert int((best >= threshold).sum()) <= _upper(alpha * tests)
    assert int((best >= threshold - 2.0).sum()) > int((best >= threshold).sum())


def test_new_signature_thresholds_ranked_by_appearance_keep_the_deploys_budget():
    """Null deploys each bringing several harmless new signatures at exactly the floor rate: the i-th to
    appear gets 1 / (i (i + 1)) of the deploy's alpha, so the deploys with any false alarm stay within
    alpha however many appear; and the bound is not vacuous (half the evidence alarms far more often)."""
    rng = np.random.default_rng(14)
    deploys, streams, alpha, floor = 600, 6, 0.1, 0.001
    minutes = pd.date_range("2026-11-02 09:00", periods=12 * 60, freq="min", tz="UTC")
    exposure = diurnal_sessions(minutes, 60.0)
    counts = rng.poisson(floor * exposure[None, None, :], size=(deploys, streams, len(minutes))).astype(float)
    cum_counts = np.cumsum(counts, axis=2)
    cum_expected = np.broadcast_to(floor * np.cumsum(exposure), counts.shape)
    rows = counts > 0
    log_e = np.full(counts.shape, -np.inf)
    log_e[rows] = mixture_log_evidence(cum_counts[rows], cum_expected[rows], RATIOS)
    best = log_e.max(axis=2)
    seen = rows.any(axis=2)
    first = np.where(seen, rows.argmax(axis=2), len(minutes))
    rank = np.argsort(np.argsort(first + rng.random(first.shape) * 0.5, axis=1), axis=1) + 1.0
    thresholds = np.log(rank * (rank + 1.0) / alpha)
    alarmed = int(((best >= thresholds) & seen).any(axis=1).sum())
    assert alarmed <= _upper(alpha * deploys), alarmed
    halved = int(((best >= thresholds / 2) & seen).any(axis=1).sum())
    assert halved > 3 * max(alarmed, 1), (halved, alarmed)
