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


def baseline_rate_estimate(
    events: np.ndarray | float, exposure: np.ndarray | float, prior_events: float = 1.0
) -> np.ndarray:
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


def mixture_log_evidence(cum_counts: np.ndarray, cum_expected: np.ndarray, rate_ratios: np.ndarray) -> np.ndarray:
    """log of the e-process ``mean_j prod_t k_j**x_t * exp(-(k_j - 1) * mu_t)`` (uniform weights).

    ``cum_counts``/``cum_expected`` are the counts and null-expected counts accumulated since the
    test started. Only ratios > 1 are mixed, so evidence is one-sided (a rise, never a drop).
    """
    ratios = np.asarray(rate_ratios, float)
    terms = (
        np.asarray(cum_counts, float)[:, None] * np.log(ratios)[None, :]
        - np.asarray(cum_expected, float)[:, None] * (ratios - 1.0)[None, :]
    )
    return logsumexp(terms, axis=1) - math.log(len(ratios))


def conditional_log_lr_increments(
    new_counts: np.ndarray, old_counts: np.ndarray, new_share: np.ndarray, rate_ratios: np.ndarray
) -> np.ndarray:
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


def sparse_poisson_cusum(
    counts: np.ndarray, expected_before: np.ndarray, expected_through: np.ndarray, start: np.ndarray, rate_ratio: float
) -> SparseCusum:
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


def mixture_log_evidence_vs_estimate(
    cum_counts: np.ndarray,
    cum_exposure: np.ndarray,
    baseline_counts: np.ndarray | float,
    baseline_exposure: np.ndarray | float,
    rate_ratios: np.ndarray,
) -> np.ndarray:
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


def binomial_glr_bound(
    cum_counts: np.ndarray,
    cum_exposure: np.ndarray,
    baseline_counts: np.ndarray | float,
    baseline_exposure: np.ndarray | float,
) -> np.ndarray:
    """Upper bound (nats) on :func:`mixture_log_evidence_vs_estimate` for any ratios: the binomial GLR of
    ``X`` successes in ``a + X`` trials against success probability ``N / (b + N)``."""
    x = np.asarray(cum_counts, float)
    trials = x + np.asarray(baseline_counts, float)
    p0 = np.asarray(cum_exposure, float) / (np.asarray(baseline_exposure, float) + np.asarray(cum_exposure, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / trials
        kl = np.where(p > 0, p * np.log(p / p0), 0.0) + np.where(p < 1, (1 - p) * np.log((1 - p) / (1 - p0)), 0.0)
    return np.where((p > p0) & (trials > 0), trials * kl, 0.0)


DISPERSION_SCALES = (1, 4, 16, 64)
"""Block lengths (in steps of the data) at which a stream's dispersion is measured."""


def pearson_dispersion(
    codes: np.ndarray,
    blocks: np.ndarray,
    counts: np.ndarray,
    block_exposure: np.ndarray,
    n_codes: int,
    *,
    excluded: dict[int, np.ndarray] | None = None,
    alpha: float = 0.01,
    min_blocks: int = 8,
    min_expected: float = 2.0,
) -> np.ndarray:
    """Overdispersion ``phi`` (>= 1) per stream at one block length: Pearson's ``chi^2 / df`` of the block
    counts against a constant rate times exposure, kept only where it is significant.

    ``codes``/``blocks``/``counts`` are sparse rows (stream code, block index, count; several rows of one
    (stream, block) are summed); ``block_exposure[j]`` is block ``j``'s exposure (blocks without exposure
    do not count). ``excluded[code]`` lists blocks left out for that stream (its past excursions). Only
    counts (events) are needed, not zeros: with ``r = X / E``, ``sum_j (X_j - r E_j)^2 / (r E_j) =
    sum_j X_j^2 / (r E_j) - X``. Under a Poisson null the sum is ~ chi^2 with ``blocks - 1`` degrees of
    freedom; ``phi`` is 1 unless it exceeds the ``1 - alpha`` quantile, and unless the stream has
    ``min_blocks`` blocks of at least ``min_expected`` expected counts on average (the chi^2
    approximation is poor for sparser blocks; a longer block length measures those streams).
    """
    from scipy.stats import chi2

    exposure = np.asarray(block_exposure, float)
    valid = exposure > 0
    n_valid = int(valid.sum())
    total_exposure = float(exposure[valid].sum())
    phi = np.ones(n_codes)
    if n_valid < min_blocks or len(codes) == 0:
        return phi
    codes = np.asarray(codes, np.int64)
    blocks = np.asarray(blocks, np.int64)
    keep = valid[blocks]
    n_stream_blocks = np.full(n_codes, float(n_valid))
    stream_exposure = np.full(n_codes, total_exposure)
    for code, dropped in (excluded or {}).items():
        dropped = np.unique(np.asarray(dropped, np.int64))
        dropped = dropped[(dropped >= 0) & (dropped < len(exposure))]
        dropped = dropped[valid[dropped]]
        n_stream_blocks[code] -= len(dropped)
        stream_exposure[code] -= float(exposure[dropped].sum())
        keep &= ~((codes == code) & np.isin(blocks, dropped))
    codes, blocks, values = codes[keep], blocks[keep], np.asarray(counts, float)[keep]
    if len(codes) == 0:
        return phi
    pair = codes * len(exposure) + blocks
    unique_pair, inverse = np.unique(pair, return_inverse=True)
    block_counts = np.bincount(inverse, weights=values)
    pair_code, pair_block = unique_pair // len(exposure), unique_pair % len(exposure)
    totals = np.bincount(pair_code, weights=block_counts, minlength=n_codes)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = totals / stream_exposure
        squares = np.bincount(pair_code, weights=block_counts**2 / exposure[pair_block], minlength=n_codes)
        statistic = squares / rate - totals
        df = n_stream_blocks - 1.0
        enough = (n_stream_blocks >= min_blocks) & (totals > 0) & (totals / n_stream_blocks >= min_expected)
        significant = enough & (statistic > chi2.ppf(1.0 - alpha, np.maximum(df, 1.0)))
        phi = np.where(significant, np.maximum(statistic / df, 1.0), 1.0)
    return phi


def quasi_poisson_dispersion(
    codes: np.ndarray,
    steps: np.ndarray,
    counts: np.ndarray,
    step_exposure: np.ndarray,
    n_codes: int,
    *,
    excluded: dict[int, np.ndarray] | None = None,
    scales: tuple[int, ...] = DISPERSION_SCALES,
    alpha: float = 0.01,
) -> np.ndarray:
    """Each stream's overdispersion: the largest significant :func:`pearson_dispersion` over block lengths
    ``scales`` (in steps; ``steps`` are the rows' step indices, ``step_exposure`` the exposure per step).

    A CUSUM adds evidence over many steps, so what matters is the variance of counts summed over its
    detection delay: slow swings of a stream's rate (time of day, audience) do not show step by step but
    do over an hour. ``excluded[code]`` holds steps left out for that stream.
    """
    exposure = np.asarray(step_exposure, float)
    phi = np.ones(n_codes)
    for scale in scales:
        n_blocks = -(-len(exposure) // scale)
        padded = np.zeros(n_blocks * scale)
        padded[: len(exposure)] = exposure
        block_exposure = padded.reshape(n_blocks, scale).sum(axis=1)
        dropped = (
            None if not excluded else {c: np.unique(np.asarray(s, np.int64) // scale) for c, s in excluded.items()}
        )
        phi = np.maximum(
            phi,
            pearson_dispersion(
                codes,
                np.asarray(steps, np.int64) // scale,
                counts,
                block_exposure,
                n_codes,
                excluded=dropped,
                alpha=alpha,
            ),
        )
    return phi
