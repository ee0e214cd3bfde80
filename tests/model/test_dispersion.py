"""Overdispersed counts: each stream's dispersion from its own history, and the quasi-Poisson spike CUSUM
keeping the false-alarm budget on Poisson and on overdispersed null data (where the Poisson one does not)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from detector.model import DetectorConfig, detect_anomalies
from detector.model.sequential import (
    MINUTES_PER_WEEK,
    count_alarm_excursions,
    cusum_threshold,
    pearson_dispersion,
    poisson_cusum_path,
    quasi_poisson_dispersion,
)
from detector.model.spikes import excursions_after

from .conftest import frames

HISTORY = 1440
WEEKS = 4


def _null_counts(rng: np.random.Generator, kind: str, means: np.ndarray, steps: int) -> np.ndarray:
    """Counts per step with mean ``means`` (per stream): Poisson; negative binomial with dispersion 3
    (a gamma-distributed rate each step); or a rate that jumps every hour (gamma, CV 0.5): bursty hours."""
    if kind == "poisson":
        rate = np.broadcast_to(means[:, None], (len(means), steps))
    elif kind == "negative_binomial":
        rate = rng.gamma(means[:, None] / 2.0 * np.ones((1, steps)), 2.0)
    else:
        hourly = rng.gamma(4.0, 0.25, (len(means), steps // 60 + 1))
        rate = means[:, None] * np.repeat(hourly, 60, axis=1)[:, :steps]
    return rng.poisson(rate)


def _alarms(counts: np.ndarray, threshold: float, *, quasi: bool) -> tuple[int, np.ndarray]:
    """Alarm excursions over the steps after ``HISTORY``, baseline rate and dispersion from the history."""
    history, watched = counts[:, :HISTORY], counts[:, HISTORY:].astype(float)
    rows, steps = np.nonzero(history)
    phi = (
        quasi_poisson_dispersion(rows, steps, history[rows, steps], np.ones(HISTORY), len(counts))
        if quasi
        else np.ones(len(counts))
    )
    rate = (history.sum(axis=1) + 1.0) / HISTORY
    expected = np.broadcast_to(rate[:, None], watched.shape)
    statistic = poisson_cusum_path(watched / phi[:, None], expected / phi[:, None], 2.0)
    return count_alarm_excursions(statistic, threshold), phi


@pytest.mark.parametrize("kind", ["poisson", "negative_binomial", "bursty_hours"])
def test_quasi_poisson_spike_cusum_keeps_the_budget_on_null_data(kind):
    rng = np.random.default_rng({"poisson": 31, "negative_binomial": 32, "bursty_hours": 33}[kind])
    streams, budget = 30, 30.0
    means = rng.choice([0.05, 0.5, 3.0], size=streams)
    counts = _null_counts(rng, kind, means, HISTORY + WEEKS * MINUTES_PER_WEEK)
    threshold = cusum_threshold(alarms_per_week=budget, n_streams=streams)
    alarms, phi = _alarms(counts, threshold, quasi=True)
    allowed = budget * WEEKS
    assert alarms <= allowed + 3.0 * math.sqrt(allowed)
    poisson_alarms, _ = _alarms(counts, threshold, quasi=False)
    if kind == "poisson":
        # near-Poisson streams keep the Poisson test (and its sensitivity)
        assert (phi == 1.0).mean() >= 0.9
        assert alarms == poisson_alarms
    else:
        # the same data break the Poisson budget many times over: the calibration is not vacuous
        assert poisson_alarms > 5 * allowed
        assert np.median(phi) > 2.0


def test_dispersion_estimate_matches_the_true_dispersion():
    rng = np.random.default_rng(34)
    # 40 streams of 2,000 steps, negative binomial with mean 4 and variance 4 * 5
    counts = rng.poisson(rng.gamma(1.0, 4.0, (40, 2000)))
    rows, steps = np.nonzero(counts)
    phi = pearson_dispersion(rows, steps, counts[rows, steps], np.ones(2000), 40)
    assert np.median(phi) == pytest.approx(5.0, rel=0.1)
    # a past excursion of a stream is left out of its estimate
    counts[0, :200] += 40
    rows, steps = np.nonzero(counts)
    raised = pearson_dispersion(rows, steps, counts[rows, steps], np.ones(2000), 40)[0]
    kept = pearson_dispersion(rows, steps, counts[rows, steps], np.ones(2000), 40, excluded={0: np.arange(200)})[0]
    assert raised > 3 * phi[0] and kept == pytest.approx(phi[0], rel=0.1)


def test_sparse_streams_are_not_called_overdispersed_from_a_few_counts():
    rng = np.random.default_rng(35)
    counts = rng.poisson(0.02, (50, 1440))  # a rare signature: ~30 affected sessions a day
    rows, steps = np.nonzero(counts)
    phi = quasi_poisson_dispersion(rows, steps, counts[rows, steps], np.ones(1440), 50)
    assert (phi == 1.0).mean() >= 0.9


def _hourly_frames(crashes: np.ndarray, launches: float, start: pd.Timestamp) -> dict:
    hours = pd.date_range(start, periods=len(crashes), freq="h")
    rows = [
        {
            "signature_id": 1,
            "release": "app",
            "environment": "production",
            "minute": m,
            "events": int(k),
            "users": int(k),
            "sessions": int(k),
        }
        for m, k in zip(hours, crashes, strict=True)
        if k > 0
    ]
    sessions = [
        {
            "release": "app",
            "environment": "production",
            "minute": m,
            "started": launches,
            "errored": int(k),
            "crashed": 0,
        }
        for m, k in zip(hours, crashes, strict=True)
    ]
    return frames(
        rows,
        sessions,
        [{"signature_id": 1, "title": "crash", "first_seen": start, "noise_class": None, "in_app": True}],
        [],
    )


def test_the_detector_keeps_the_budget_on_a_bursty_hourly_stream_pass_by_pass():
    """Through ``detect_anomalies``, a pass an hour with excursions carried: 12 weeks of a bursty null
    stream (negative binomial, dispersion 6 at ~5 crashes an hour) against 0.25 spikes a week."""
    rng = np.random.default_rng(36)
    start = pd.Timestamp("2026-06-01", tz="UTC")
    history, weeks = 14 * 24, 12
    crashes = rng.poisson(rng.gamma(1.0, 5.0, history + weeks * 168))
    data = _hourly_frames(crashes, 1000.0, start)
    config = DetectorConfig()
    state: dict = {}
    keys: set[str] = set()
    sig, ses = data["sig_counts"], data["session_counts"]
    for step in range(history, len(crashes)):
        at = start + pd.Timedelta(hours=step)
        since = at - pd.Timedelta(hours=history)
        found = detect_anomalies(
            sig[(sig.minute > since) & (sig.minute <= at)],
            ses[(ses.minute > since) & (ses.minute <= at)],
            data["signatures"],
            data["deploys"],
            at,
            config,
            spike_excursions=[e for e in state.values() if e.running or e.ended_at > since],
        )
        keys |= {f.key for f in found}
        state = excursions_after(state, found)
    allowed = config.budget("spike") * weeks
    assert len(keys) <= allowed + 3.0 * math.sqrt(allowed)
