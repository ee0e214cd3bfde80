"""Is the new release's errored-session rate below the margin of the old one? An anytime-valid answer (pure).

The verdict's `healthy` rests on rejecting, at level ``alpha`` and at any minute of the watch,

    H0:  p  >=  g(q) + shift        g(q) = min(max(tolerance q, q + absolute), 1)

where ``p`` is the new release's errored-session rate and ``q`` the old one's, both unknown: the old rate
is seen once, on the baseline (``k`` errored of ``n`` sessions), the new one minute by minute since the
deploy (``S_i`` errored of ``N_i`` sessions in minute ``i``). The statistic is

    E_t(shift) = inf_q  B(q) * M_t(g(q) + shift)

* ``B(q)``: an e-value for "the old rate is q" from the baseline alone, the equal-weight mixture of the
  likelihood ratios ``rho^k ((1 - rho q) / (1 - q))^(n - k)`` over alternatives ``rho q`` above ``q``
  (``rho = 1 + c sqrt((1 - q) / (q n))``, ``c`` in ``BASELINE_SHIFTS``, the first one 0: the trivial
  e-value 1, so B never falls below 1/7 where the baseline ran below q). Each ratio has mean exactly 1
  under rate q, so E_q[B(q)] = 1.
* ``M_t(m)``: the new release's likelihood ratio of "rate ``r_i m``" against "rate ``m``", multiplied over
  minutes, ``prod_i r_i^S_i ((1 - r_i m) / (1 - m))^(N_i - S_i)``: each factor has conditional mean
  ``p r + (1 - p)(1 - r m)/(1 - m)``, 1 at ``p = m`` and falling in ``p``, so M_t is a nonnegative
  supermartingale whenever p >= m. ``r_i`` is fixed from the session counts up to minute ``i`` (never from
  errored ones): sessions start whatever their outcome, so given the counts the factors are still
  independent with those means (a predictable tuning, Waudby-Smith & Ramdas 2023).

**Guarantee.** At the true (q*, p*) in H0, ``X_t = B(q*) M_t(g(q*) + shift)`` is a nonnegative
supermartingale with mean ``E[B(q*)] = 1`` at the start (the baseline is independent of the new sessions),
and ``E_t <= X_t``; by Ville's inequality ``P(exists t: E_t >= 1/alpha) <= alpha``: watching every minute,
or every second, never calls `healthy` more often than ``alpha`` when the truth is at or above the margin.
It is one-sided (only the upper side of p matters) and two-sample (the old rate's uncertainty enters
through B, from its own session count, not as a second full-width bound).

**Tuning.** In the Gaussian limit ``log B(q) ~ z_b(q)^2 / 2`` and ``log M_t(m) ~ a (n_t m - S_t) / n_t -
a^2 s_new^2 / 2`` (a the tilt in rate units), so the infimum over q is ``a D - a^2 (s_new^2 + g'^2 s_old^2)
/ 2`` with ``D = g(q_hat) - p_hat``: the difference test with both variances, the boundary tangent to
``D = sqrt(2 log(1/alpha)) s`` at the sessions for which ``a = sqrt(2 log(1/alpha)) / s``. The tilt is chosen
so that happens at the horizon's sample: ``horizon_minutes`` times the busiest minute so far (at least
``min_sessions``), the 30-minute sample by default, where the bound needs 2.45 standard errors of the
difference (a mixture over horizons needs about 3.0; a fixed-time test 1.64). Tunings depend on ``q``
only through a fixed grid of cells (``CELL_RATIO`` apart from ``CELL_FLOOR``), so within a cell ``B`` falls
and ``M_t(g(q))`` grows with q, and the infimum over a cell is bounded below by B at its top times M at its
bottom: ``E_t`` is computed as that bound over a partition of [0, 1), fine around the baseline's estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

BASELINE_SHIFTS: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
"""Alternatives of B, in standard errors of the baseline above q (0: the trivial e-value)."""
CELL_FLOOR = 1e-4
CELL_RATIO = 1.05
"""Tuning cells of q: [0, 1e-4), then [1e-4 x 1.05^k, 1e-4 x 1.05^(k+1)), the last one up to 1."""
FINE_POINTS = 241
FINE_WIDTH = 6.0
"""The partition's fine part: this many points within this many standard errors of the baseline's rate."""
_EPS = 1e-12


def margin_of(old_rate: np.ndarray | float, tolerance: float, absolute: float) -> np.ndarray:
    """g(q) = max(q x tolerance, q + absolute), at most 1."""
    q = np.asarray(old_rate, float)
    return np.asarray(np.minimum(np.maximum(q * tolerance, q + absolute), 1.0))


def _boundaries() -> np.ndarray:
    count = int(math.log(0.5 / CELL_FLOOR) / math.log(CELL_RATIO)) + 1
    return CELL_FLOOR * CELL_RATIO ** np.arange(count)


@dataclass(frozen=True)
class _Prepared:
    """What E_t needs that does not depend on the shift: the partition, log B at each sub-cell's top, and
    M's tilts (per run, minute and sub-cell)."""

    started: np.ndarray
    errored: np.ndarray
    log_b: np.ndarray
    margin_lo: np.ndarray
    r: np.ndarray
    errored_terms: np.ndarray


def _prepare(
    started: np.ndarray,
    errored: np.ndarray,
    old_errored: np.ndarray | float,
    old_sessions: np.ndarray | float,
    *,
    tolerance: float,
    absolute: float,
    alpha: float,
    min_sessions: int,
    horizon_minutes: int,
    fine_points: int = FINE_POINTS,
) -> _Prepared:
    n_i = np.atleast_2d(np.asarray(started, float))
    s_i = np.minimum(np.atleast_2d(np.asarray(errored, float)), n_i)
    runs = n_i.shape[0]
    k = np.broadcast_to(np.asarray(old_errored, float), (runs,)).astype(float)
    n = np.maximum(np.broadcast_to(np.asarray(old_sessions, float), (runs,)).astype(float), k)
    if np.any(n <= 0):
        raise ValueError("the baseline needs sessions")

    # the partition of [0, 1): 0, the cell boundaries, and the fine points around the baseline's estimate
    bounds = _boundaries()
    q_hat = k / n
    se = np.sqrt(np.maximum(q_hat * (1 - q_hat), 1 / n) / n)
    fine = q_hat[:, None] + se[:, None] * np.linspace(-FINE_WIDTH, FINE_WIDTH, fine_points)
    fine = np.clip(fine, 0.0, 0.999)
    grid = np.sort(np.concatenate([np.zeros((runs, 1)), np.broadcast_to(bounds, (runs, len(bounds))), fine], 1), 1)
    q_lo = grid
    q_hi = np.concatenate([grid[:, 1:], np.ones((runs, 1))], 1)
    cell = np.searchsorted(bounds, q_lo, side="right") - 1
    anchor = np.where(cell < 0, CELL_FLOOR, bounds[np.maximum(cell, 0)] * math.sqrt(CELL_RATIO))
    cell_hi = np.where(cell + 1 < len(bounds), bounds[np.minimum(cell + 1, len(bounds) - 1)], 1.0)
    anchor = np.minimum(anchor, 0.5)

    # B at each sub-cell's top (it falls with q within a cell); the last sub-cell only has the trivial 1/C
    c = np.asarray(BASELINE_SHIFTS)
    rho = 1 + c * np.sqrt((1 - anchor[..., None]) / (anchor[..., None] * n[:, None, None]))
    rho = np.maximum(np.minimum(rho, (1 - 1e-9) / cell_hi[..., None]), 1.0)
    top = np.minimum(q_hi, 1 - 1e-9)[..., None]
    kk, nn = k[:, None, None], n[:, None, None]
    log_b = logsumexp(kk * np.log(rho) + (nn - kk) * (np.log1p(-rho * top) - np.log1p(-top)), axis=-1)
    log_b = log_b - math.log(len(c))
    log_b[:, -1] = -math.log(len(c))

    # M's tilt per sub-cell and minute, tangent at the horizon's sample
    m_tilde = margin_of(anchor, tolerance, absolute).clip(_EPS, 1 - 1e-9)
    slope = np.where(anchor * tolerance >= anchor + absolute, tolerance, 1.0)
    horizon = np.maximum(horizon_minutes * np.maximum.accumulate(n_i, axis=1), float(min_sessions))
    var_new = (m_tilde * (1 - m_tilde))[:, None, :] / horizon[..., None]
    var_old = (slope**2 * anchor * (1 - anchor) / n[:, None])[:, None, :]
    tilt = math.sqrt(2 * math.log(1 / alpha)) / (horizon[..., None] * np.sqrt(var_new + var_old))
    r = np.clip(1 - tilt * (1 - m_tilde)[:, None, :], 0.02, 0.999)
    return _Prepared(
        started=n_i,
        errored=s_i,
        log_b=log_b,
        margin_lo=margin_of(q_lo, tolerance, absolute),
        r=r,
        errored_terms=s_i[..., None] * np.log(r),
    )


def _log_evidence(prepared: _Prepared, shifts: np.ndarray) -> np.ndarray:
    """log E_t from `_prepare` at one shift per run: min over sub-cells of log B(top) + log M_t(g(bottom))."""
    p = prepared
    m = np.clip(p.margin_lo + shifts[:, None], _EPS, 1 - 1e-9)[:, None, :]
    terms = p.errored_terms + (p.started - p.errored)[..., None] * (np.log1p(-p.r * m) - np.log1p(-m))
    return np.asarray((p.log_b[:, None, :] + np.cumsum(terms, axis=1)).min(axis=-1))


def log_evidence_below_margin(
    started: np.ndarray,
    errored: np.ndarray,
    old_errored: np.ndarray | float,
    old_sessions: np.ndarray | float,
    *,
    tolerance: float,
    absolute: float,
    alpha: float,
    min_sessions: int,
    horizon_minutes: int,
    shift: np.ndarray | float = 0.0,
    fine_points: int = FINE_POINTS,
) -> np.ndarray:
    """log E_t for runs (rows) of per-minute counts (columns) and each run's baseline; shape (runs, minutes).
    ``shift`` (one per run) moves H0 to p >= g(q) + shift."""
    prepared = _prepare(
        started, errored, old_errored, old_sessions, tolerance=tolerance, absolute=absolute, alpha=alpha,
        min_sessions=min_sessions, horizon_minutes=horizon_minutes, fine_points=fine_points,
    )  # fmt: skip
    runs = prepared.started.shape[0]
    return _log_evidence(prepared, np.broadcast_to(np.asarray(shift, float), (runs,)).astype(float))


def first_below_margin(
    started: np.ndarray,
    errored: np.ndarray,
    old_errored: np.ndarray | float,
    old_sessions: np.ndarray | float,
    *,
    alpha: float,
    min_sessions: int,
    chunk: int = 256,
    **tuning: float | int,
) -> np.ndarray:
    """Per run, the first minute (index) at which E_t reaches 1/alpha with at least `min_sessions`; -1 where
    none does. Runs are evaluated `chunk` at a time (the partition is runs x minutes x ~350 cells)."""
    n_i = np.atleast_2d(np.asarray(started, float))
    s_i = np.atleast_2d(np.asarray(errored, float))
    k = np.broadcast_to(np.asarray(old_errored, float), (len(n_i),))
    n = np.broadcast_to(np.asarray(old_sessions, float), (len(n_i),))
    found = np.full(len(n_i), -1)
    for start in range(0, len(n_i), chunk):
        part = slice(start, start + chunk)
        log_e = log_evidence_below_margin(
            n_i[part], s_i[part], k[part], n[part], alpha=alpha, min_sessions=min_sessions, **tuning
        )  # type: ignore[arg-type]
        below = (np.cumsum(n_i[part], axis=1) >= min_sessions) & (log_e >= math.log(1 / alpha))
        found[part] = np.where(below.any(axis=1), below.argmax(axis=1), -1)
    return found


def excess_upper_bound(
    started: np.ndarray,
    errored: np.ndarray,
    old_errored: float,
    old_sessions: float,
    minutes: np.ndarray,
    *,
    alpha: float,
    iterations: int = 16,
    **tuning: float | int,
) -> np.ndarray:
    """For one run's per-minute counts, at each minute index of `minutes`, the smallest shift at which E_t
    reaches 1/alpha: an upper confidence bound on ``p - g(q)``, valid at every minute at once, so that their
    minimum is one too. Below 0 exactly where E_t(0) reaches 1/alpha (0 is tried first), then bisection
    (to 2^-iterations); 1 where no shift up to 1 reaches it."""
    n_i = np.asarray(started, float).ravel()
    s_i = np.asarray(errored, float).ravel()
    at = np.asarray(minutes, int)
    # one row per asked minute, its counts cut there (later minutes add nothing to E at that minute)
    keep = np.arange(len(n_i))[None, :] <= at[:, None]
    rows_n, rows_s = np.where(keep, n_i, 0.0), np.where(keep, s_i, 0.0)
    threshold = math.log(1 / alpha)

    prepared = _prepare(rows_n, rows_s, old_errored, old_sessions, alpha=alpha, **tuning)  # type: ignore[arg-type]

    def reached(shift: np.ndarray) -> np.ndarray:
        return _log_evidence(prepared, shift)[np.arange(len(at)), at] >= threshold

    at_zero = reached(np.zeros(len(at)))
    low = np.where(at_zero, -1.0, 0.0)
    high = np.where(at_zero, 0.0, 1.0)
    for _ in range(iterations):
        mid = (low + high) / 2
        hit = reached(mid)
        high, low = np.where(hit, mid, high), np.where(hit, low, mid)
    return high
