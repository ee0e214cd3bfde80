"""Sequential tests on count streams with sessions as exposure, and their calibration.

Two likelihood-ratio statistics, both exact for Poisson counts and conservative (a supermartingale
under the null) for binomial ones, because ``E[k**x] <= exp((k - 1) * n * p)`` for ``x ~ Bin(n, p)``:

* the **Poisson CUSUM** (Page) on the rate ratio ``k``: per minute ``x * log(k) - (k - 1) * mu`` where
  ``mu = baseline_rate * exposure``; ``S_t = C_t - min(0, min_{s<=t} C_s)`` for the cumulative sum
  ``C``. Used for continuous monitoring (spikes): its false alarms per stream-minute are at most
  ``exp(-h)`` (Lorden: ARL0 >= e^h), so ``h = log(ARL0)``.
* the **mixture likelihood ratio** (an e-process) started at a known time (a deploy): the average of
  the likelihood ratios over a grid of rate ratios. By Ville's inequality it ever exceeds ``1/alpha``
  with probability at most ``alpha``, however long it is watched, so ``h = log(1/alpha)``.

Everything here works on plain numpy arrays. Rows of "sparse" arrays are minutes in which a stream
had at least one affected session, sorted by stream then minute; the drift between such rows comes
from cumulative exposure, so the cost grows with events, not with minutes x streams.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

MINUTES_PER_WEEK = 7 * 24 * 60


def cusum_threshold(*, alarms_per_week: float, n_streams: float, step_minutes: float = 1.0) -> float:
    """Threshold ``h`` (nats) of a Poisson CUSUM so ``n_streams`` streams give <= ``alarms_per_week``.

    The in-control average run length needed is ``ARL0 = n_streams * steps_per_week / alarms_per_week``
    and ``ARL0 >= exp(h)`` holds for a CUSUM of exact log-likelihood ratios, so ``h = log(ARL0)``.
    """
    if alarms_per_week <= 0 or n_streams <= 0 or step_minutes <= 0:
        raise ValueError("alarms_per_week, n_streams and step_minutes must be positive")
    arl0 = n_streams * (MINUTES_PER_WEEK / step_minutes) / alarms_per_week
    return math.log(max(arl0, 1.0))


def eprocess_threshold(*, alarms_per_week: float, tests_per_week: float) -> float:
    """Threshold ``h = log(1/alpha)`` (nats) of an e-process; alpha-spending ``alpha = budget / tests``.

    Each test (one stream after one deploy) gets ``alpha = alarms_per_week / tests_per_week`` so the
    expected number of false alarms per week is at most the budget (Bonferroni over tests).
    """
    if alarms_per_week <= 0 or tests_per_week <= 0:
        raise ValueError("alarms_per_week and tests_per_week must be positive")
    return math.log(max(tests_per_week / alarms_per_week, 1.0))


def baseline_rate_estimate(events: np.ndarray | float, exposure: np.ndarray | float,
                           prior_events: float = 1.0) -> np.ndarray:
    """Rate per unit exposure, ``(events + prior_events) / exposure``; ``nan`` where exposure is 0.

    The added pseudo-event keeps the rate of a rarely seen signature from being estimated as (near)
    zero, which would turn ordinary Poisson noise into false alarms.
    """
    events_arr = np.asarray(events, dtype=float)
    exposure_arr = np.asarray(exposure, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(exposure_arr > 0, (events_arr + prior_events) / exposure_arr, np.nan)


def poisson_cusum_path(counts: np.ndarray, expected: np.ndarray, rate_ratio: float) -> np.ndarray:
    """Dense Poisson CUSUM statistic after each step (nats, >= 0) for one stream.

    ``expected`` is the count expected under the baseline (``baseline_rate * exposure``).
    """
    if rate_ratio <= 1:
        raise ValueError("rate_ratio must exceed 1")
    counts_arr = np.asarray(counts, float)
    increments = counts_arr * math.log(rate_ratio) - (rate_ratio - 1.0) * np.asarray(expected, float)
    cumulative = np.cumsum(increments, axis=-1)
    running_min = np.minimum(np.minimum.accumulate(cumulative, axis=-1), 0.0)
    return cumulative - running_min


def count_alarm_excursions(statistic: np.ndarray, threshold: float) -> int:
    """Number of excursions (maximal runs of statistic > 0) of each row that reach ``threshold``.

    This is how the detector counts alarms: one finding per excursion, however long it lasts.
    """
    stat = np.atleast_2d(np.asarray(statistic, float))
    total = 0
    for row in stat:
        excursion_id = np.cumsum(row <= 0.0)
        total += int(np.unique(excursion_id[row >= threshold]).size)
    return total


def group_starts(codes: np.ndarray) -> np.ndarray:
    """Boolean mask of the first row of each run of equal ``codes`` (codes sorted by stream)."""
    start = np.ones(len(codes), dtype=bool)
    if len(codes) > 1:
        start[1:] = codes[1:] != codes[:-1]
    return start


def grouped_cumsum(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Cumulative sum along axis 0 restarting at every ``start`` row (1-D or 2-D ``values``)."""
    values = np.asarray(values, float)
    if values.shape[0] == 0:
        return values.copy()
    total = np.cumsum(values, axis=0)
    group_of_row = np.cumsum(start) - 1
    first_rows = np.flatnonzero(start)
    before_group = total[first_rows] - values[first_rows]
    return total - before_group[group_of_row]


def _grouped_accumulate(values: np.ndarray, start: np.ndarray, sign: float) -> np.ndarray:
    values = np.asarray(values, float)
    if len(values) == 0:
        return values.copy()
    # Shift each group by a multiple of a span wider than the data's range so one global running
    # maximum cannot carry a value across a group boundary.
    group = np.cumsum(start) - 1
    span = float(np.ptp(values)) + 1.0
    shifted = sign * values + group * span
    return sign * (np.maximum.accumulate(shifted) - group * span)


def grouped_cummin(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Running minimum along rows restarting at every ``start`` row."""
    return _grouped_accumulate(values, start, -1.0)


def grouped_cummax(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Running maximum along rows restarting at every ``start`` row."""
    return _grouped_accumulate(values, start, 1.0)


def mixture_log_evidence(cum_counts: np.ndarray, cum_expected: np.ndarray,
                         rate_ratios: np.ndarray) -> np.ndarray:
    """log of the e-process ``mean_j prod_t k_j**x_t * exp(-(k_j - 1) * mu_t)`` (uniform weights).

    ``cum_counts``/``cum_expected`` are the counts and null-expected counts accumulated since the
    test started. Only ratios > 1 are mixed, so evidence is one-sided (a rise, never a drop).
    """
    ratios = np.asarray(rate_ratios, float)
    terms = (np.asarray(cum_counts, float)[:, None] * np.log(ratios)[None, :]
             - np.asarray(cum_expected, float)[:, None] * (ratios - 1.0)[None, :])
    return logsumexp(terms, axis=1) - math.log(len(ratios))


def conditional_log_lr_increments(new_counts: np.ndarray, old_counts: np.ndarray, new_share: np.ndarray,
                                  rate_ratios: np.ndarray) -> np.ndarray:
    """Per-row log-likelihood ratios (rows x ratios) of the concurrent-control test.

    Given that ``new + old`` affected sessions occurred in a minute, each is on the new release with
    probability ``pi = new_share`` (its share of exposure) if both releases have the same rate, and
    ``k * pi / (k * pi + 1 - pi)`` if the new release's rate is ``k`` times the old one's. Conditioning
    on the minute's total cancels everything that hits both releases alike (time of day, a backend
    outage, a browser update), so only a difference between releases is evidence.
    """
    ratios = np.asarray(rate_ratios, float)[None, :]
    pi = np.clip(np.asarray(new_share, float), 0.0, 1.0)[:, None]
    new = np.asarray(new_counts, float)[:, None]
    total = new + np.asarray(old_counts, float)[:, None]
    return new * np.log(ratios) - total * np.log(ratios * pi + 1.0 - pi)


def mixture_log_evidence_from_increments(increments: np.ndarray, start: np.ndarray) -> np.ndarray:
    """log of the uniform mixture of per-ratio likelihood ratios accumulated per stream."""
    cumulative = grouped_cumsum(increments, start)
    return logsumexp(cumulative, axis=1) - math.log(increments.shape[1])


class SparseCusum(NamedTuple):
    """Per-row results of :func:`sparse_poisson_cusum`."""

    statistic: np.ndarray
    """CUSUM statistic at the end of the row's minute (nats)."""
    llr: np.ndarray
    """Cumulative log-likelihood ratio since the stream's origin, at the end of the row's minute."""
    running_min: np.ndarray
    """Minimum of 0 and the cumulative log-likelihood ratio over all minute ends up to this row."""
    excursion_start: np.ndarray
    """True where the statistic had returned to 0 since the previous row (a new excursion begins)."""


def sparse_poisson_cusum(counts: np.ndarray, expected_before: np.ndarray, expected_through: np.ndarray,
                         start: np.ndarray, rate_ratio: float) -> SparseCusum:
    """Poisson CUSUM evaluated only at the minutes with counts.

    Per row (a minute with counts of one stream): ``expected_before`` is the null-expected count
    accumulated since the stream's origin up to the end of the previous minute, ``expected_through``
    up to the end of this minute. Between rows the cumulative log-likelihood ratio only falls, so its
    running minimum is attained at the end of a minute just before a row, and the statistic's maxima
    at rows.

    The statistic at any later minute ``t`` with cumulative log-likelihood ratio ``C_t`` and no rows
    in between is ``C_t - min(running_min, C_t)`` (``running_min`` of the stream's last row).
    """
    log_k = math.log(rate_ratio)
    cum_counts = grouped_cumsum(counts, start)
    llr_before = (cum_counts - counts) * log_k - (rate_ratio - 1.0) * expected_before
    llr_through = cum_counts * log_k - (rate_ratio - 1.0) * expected_through
    min_before = np.minimum(grouped_cummin(llr_before, start), 0.0)
    running_min = np.minimum(min_before, llr_through)
    statistic = llr_through - running_min
    previous_min = np.empty_like(running_min)
    previous_min[1:] = running_min[:-1]
    previous_min[start] = 0.0
    excursion_start = start | (llr_before <= previous_min)
    return SparseCusum(statistic, llr_through, running_min, excursion_start)


def mixture_log_evidence_vs_estimate(cum_counts: np.ndarray, cum_exposure: np.ndarray,
                                     baseline_counts: np.ndarray | float, baseline_exposure: np.ndarray | float,
                                     rate_ratios: np.ndarray) -> np.ndarray:
    """log of the mixture e-process against a baseline rate that is itself estimated from data.

    The baseline saw ``baseline_counts`` (pseudo-event included) in ``baseline_exposure``; the tested
    stream ``cum_counts`` in ``cum_exposure`` since the test started. For each ratio ``k`` the factor is
    the Bayes factor of "rate ``k`` lambda" against "rate lambda" with lambda's posterior from the
    baseline (flat prior):

        k**X * ((b + N) / (b + k N))**(a + X)        a, b: baseline counts and exposure

    which is the conditional two-sample likelihood ratio (each of the ``a + X`` events is in the tested
    stream with probability ``N / (b + N)``, or ``k N / (b + k N)``). It tends to the known-rate factor
    ``k**X exp(-(k - 1) a N / b)`` as the baseline grows, and is smaller while the baseline is short:
    a baseline that happened to run low does not turn noise into evidence.
    """
    ratios = np.asarray(rate_ratios, float)[None, :]
    x = np.asarray(cum_counts, float)[:, None]
    n = np.asarray(cum_exposure, float)[:, None]
    a = np.broadcast_to(np.asarray(baseline_counts, float), np.shape(cum_counts))[:, None]
    b = np.broadcast_to(np.asarray(baseline_exposure, float), np.shape(cum_counts))[:, None]
    terms = x * np.log(ratios) + (a + x) * (np.log(b + n) - np.log(b + ratios * n))
    return logsumexp(terms, axis=1) - math.log(ratios.shape[1])


def binomial_glr_bound(cum_counts: np.ndarray, cum_exposure: np.ndarray, baseline_counts: np.ndarray | float,
                       baseline_exposure: np.ndarray | float) -> np.ndarray:
    """Upper bound (nats) on :func:`mixture_log_evidence_vs_estimate` for any ratios: the binomial GLR of
    ``X`` successes in ``a + X`` trials against success probability ``N / (b + N)``."""
    x = np.asarray(cum_counts, float)
    trials = x + np.asarray(baseline_counts, float)
    p0 = np.asarray(cum_exposure, float) / (np.asarray(baseline_exposure, float) + np.asarray(cum_exposure, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / trials
        kl = (np.where(p > 0, p * np.log(p / p0), 0.0)
              + np.where(p < 1, (1 - p) * np.log((1 - p) / (1 - p0)), 0.0))
    return np.where((p > p0) & (trials > 0), trials * kl, 0.0)
