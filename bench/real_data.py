"""Real-data benchmark of the spike detector: labelled hourly crash-rate series, run as the worker runs it.

    python -m bench.real_data [--quick] [--data bench/data/crash-rate] [--json]

Data: the ten ``app2-*.csv`` series of Microsoft's Cloud Monitoring Dataset (``bench/data/crash-rate``,
MIT licence in ``LICENSE``, upstream commit in ``SOURCE-COMMIT``): hourly application crash rates
(crashes per launch) with expert labels of anomalous hours. Each series is one signature of one project.

Counts and exposure: a value is ``crashes / launches`` stored as a float. The fraction in lowest terms
with denominator up to 20,000 that reproduces it (``Fraction.limit_denominator``) has the hour's launches
as denominator, or a divisor of them when a common factor cancelled (15/150 is stored as 0.1 and read
as 1/10). So an hour's launches (sessions started) are the larger of its denominator and the median
denominator of the 25 hours around it (hours with value 0 have none), and its crashes (affected
sessions) are ``round(value * launches)``.

Passes: for every hour one pass at that hour's minute, on the counts of the ``--history-hours`` before
it (default the model's lookback, 14 days: the worker loads 24 h of per-minute counts, 1,440 steps of
a stream, and an hourly series needs its lookback to give the model as many), with the spike
excursions earlier passes reported (the store's continuation, via
``detector.model.spikes.excursions_after``). An alarm is a pass that creates an anomaly (a key not seen
before), as the worker alerts.

Detectors, measured in the same run:

* ``detector``: ``detect_anomalies`` with the default config (quasi-Poisson dispersion, steps read off
  the data, excursions carried between passes);
* ``poisson``: the spike CUSUM before this benchmark (Poisson likelihood, a step of one minute, no
  excursion state: every new key is a new anomaly), the same code with ``spike_dispersion=False``,
  ``spike_step_minutes=1`` and no state passed in;
* ``zscore``: a rolling 3-sigma z-score of the rate over the previous 24 hours; an alarm is the first
  hour of each run of hours above ``mean + 3 sd``.

Scoring. Windows are the labelled runs of hours, each extended by ``WINDOW_SLACK`` hours (a detector
needs the hour's data to see it). Per window: detected if an alarm falls in it (recall), delay from the
window's first hour to the first alarm, anomalies created in it (anomalies per excursion). False-alarm
onsets: alarms outside every window, per 1,000 hours. NAB score: NAB's ``sweeper`` rules, reimplemented
here (``nab_raw_score``): scaled sigmoid of the relative position in or after a window, only the best
alarm of a window counts (``tpWeight``), every alarm outside windows costs ``fpWeight`` times the
sigmoid of its distance past the previous window (1 if none), every missed window ``fnWeight``; the
first 15 % of each series is probationary; standard profile (tp 1, fp 0.11, fn 1); normalised over the
corpus as NAB does, ``100 (raw - null) / (perfect - null)`` (null: no alarms; perfect: an alarm at each
window's first hour).

Also printed: the burst sensitivity left (the smallest one-hour count seen at once, or within two
hours, against a steady mean of 3.7 crashes an hour) for ``detector`` and ``poisson``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detector.model import DetectorConfig, detect_anomalies
from detector.model.spikes import SpikeExcursion, excursions_after

DATA = Path(__file__).resolve().parent / "data" / "crash-rate"
WINDOW_HOURS = 24
"""Hours of the rolling z-score and of the launches' median."""
HISTORY_HOURS = 14 * 24
"""Hours of counts a pass gets: the model's ``lookback_days``. The worker loads 24 h of per-minute counts
(1,440 steps of the stream); an hourly series needs its lookback to give the model as many steps."""
WINDOW_SLACK = 2
MAX_DENOMINATOR = 20_000
PROBATION = 0.15
STANDARD_PROFILE = {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}
ENVIRONMENT = "production"


@dataclass
class Series:
    name: str
    minutes: pd.DatetimeIndex
    crashes: np.ndarray
    launches: np.ndarray
    labels: np.ndarray
    windows: list[tuple[int, int]] = field(default_factory=list)


def load_series(path: Path) -> Series:
    """One CSV as counts and exposure (see the module docstring)."""
    frame = pd.read_csv(path)
    if not {"TimeStamp", "Value", "Label"} <= set(frame.columns):
        raise ValueError(f"{path} lacks TimeStamp, Value or Label")
    stamps = pd.DatetimeIndex(pd.to_datetime(frame["TimeStamp"], utc=True)).floor("min")
    values = frame["Value"].to_numpy(float)
    if (values < 0).any() or not np.isfinite(values).all():
        raise ValueError(f"{path}: crash rates must be finite and non-negative")
    denominators = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if value > 0:
            denominators[i] = Fraction(value).limit_denominator(MAX_DENOMINATOR).denominator
    # A fraction in lowest terms understates launches by any common factor (15/150 reads 1/10): an hour's
    # launches are the larger of its denominator and the median denominator of the day around it.
    typical = pd.Series(denominators).rolling(WINDOW_HOURS + 1, center=True, min_periods=1).median()
    fallback = float(np.nanmedian(denominators)) if np.isfinite(denominators).any() else 100.0
    launches = np.fmax(denominators, typical.fillna(fallback).to_numpy())
    launches = np.maximum(np.round(launches), 1.0)
    crashes = np.round(values * launches)
    labels = frame["Label"].to_numpy(int)
    series = Series(path.stem, stamps, crashes, launches, labels)
    series.windows = label_windows(labels, WINDOW_SLACK)
    return series


def label_windows(labels: np.ndarray, slack: int) -> list[tuple[int, int]]:
    """Runs of labelled steps as inclusive (first, last) index pairs, each extended by ``slack``; merged."""
    windows: list[tuple[int, int]] = []
    i = 0
    while i < len(labels):
        if labels[i]:
            j = i
            while j + 1 < len(labels) and labels[j + 1]:
                j += 1
            last = min(j + slack, len(labels) - 1)
            if windows and i <= windows[-1][1] + 1:
                windows[-1] = (windows[-1][0], max(last, windows[-1][1]))
            else:
                windows.append((i, last))
            i = j + 1
        else:
            i += 1
    return windows


# ---- detectors ----------------------------------------------------------------------------------


def _frames(series: Series, lo: int, hi: int) -> dict[str, pd.DataFrame]:
    minutes = series.minutes[lo:hi]
    crashes = series.crashes[lo:hi]
    has = crashes > 0
    sig_counts = pd.DataFrame(
        {
            "signature_id": 1,
            "release": "app",
            "environment": ENVIRONMENT,
            "minute": minutes[has],
            "events": crashes[has],
            "users": crashes[has],
            "sessions": crashes[has],
        }
    )
    session_counts = pd.DataFrame(
        {
            "release": "app",
            "environment": ENVIRONMENT,
            "minute": minutes,
            "started": series.launches[lo:hi],
            "errored": crashes,
            "crashed": crashes,
        }
    )
    return {"sig_counts": sig_counts, "session_counts": session_counts}


SIGNATURES = pd.DataFrame(
    {"signature_id": [1], "title": ["crash"], "first_seen": [pd.NaT], "noise_class": [None], "in_app": [True]}
)
DEPLOYS = pd.DataFrame(
    {
        "deploy_id": pd.Series([], dtype=int),
        "release": pd.Series([], dtype=str),
        "environment": pd.Series([], dtype=str),
        "deployed_at": pd.Series([], dtype="datetime64[ns, UTC]"),
    }
)


def run_detector(
    series: Series,
    config: DetectorConfig,
    *,
    carry_state: bool,
    first_pass: int = 1,
    history_hours: int = HISTORY_HOURS,
) -> tuple[np.ndarray, int]:
    """Alarm steps (a pass that created an anomaly) and the number of anomalies, one pass per step from
    step ``first_pass`` on."""
    signatures = SIGNATURES.assign(first_seen=[series.minutes[0]])
    state: dict[str, SpikeExcursion] = {}
    seen: set[str] = set()
    alarms = np.zeros(len(series.crashes), dtype=bool)
    for step in range(first_pass, len(series.crashes)):
        at = series.minutes[step]
        since = at - pd.Timedelta(hours=history_hours)
        lo = int(np.searchsorted(series.minutes, since, side="right"))
        frames = _frames(series, lo, step + 1)
        excursions = [e for e in state.values() if e.running or e.ended_at > since] if carry_state else []
        findings = detect_anomalies(
            frames["sig_counts"], frames["session_counts"], signatures, DEPLOYS, at, config, spike_excursions=excursions
        )
        spikes = [f for f in findings if f.kind == "spike"]
        new = {f.key for f in spikes} - seen
        if new:
            alarms[step] = True
        seen |= new
        if carry_state:
            state = excursions_after(state, spikes)
    return alarms, len(seen)


def run_zscore(series: Series, window: int = WINDOW_HOURS, z: float = 3.0) -> np.ndarray:
    rate = pd.Series(series.crashes / series.launches)
    history = rate.shift(1).rolling(window, min_periods=window)
    score = (rate - history.mean()) / history.std().replace(0.0, np.nan)
    above = (score > z).fillna(False).to_numpy()
    onset = above.copy()
    onset[1:] &= ~above[:-1]
    return onset


# ---- scoring ------------------------------------------------------------------------------------


def _scaled_sigmoid(position: float) -> float:
    """NAB's reward at a relative position: -1 left edge of a window, 0 right edge, > 0 after it."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_raw_score(alarms: np.ndarray, windows: list[tuple[int, int]], profile: dict[str, float]) -> float:
    """Raw NAB score of binary alarms, following the rules of NAB's ``sweeper`` (see module docstring)."""
    n = len(alarms)
    probation = min(math.floor(PROBATION * n), PROBATION * 5000)
    max_tp = _scaled_sigmoid(-1.0)
    window_of = np.full(n, -1)
    for w, (first, last) in enumerate(windows):
        window_of[first : last + 1] = w
    scored_windows = {int(window_of[i]) for i in range(n) if i >= probation and window_of[i] >= 0}
    best = dict.fromkeys(scored_windows, -profile["fnWeight"])
    false_part = 0.0
    previous_right: int | None = None
    previous_width = 0.0
    for i in range(n):
        w = int(window_of[i])
        if w >= 0:
            first, last = windows[w]
            width = float(last - first + 1)
            weighted = _scaled_sigmoid(-(last - i + 1) / width) * profile["tpWeight"] / max_tp
        else:
            past = 3.0 if previous_right is None else abs(previous_right - i) / (previous_width - 1.0 or 1.0)
            weighted = _scaled_sigmoid(past) * profile["fpWeight"]
        if alarms[i] and i >= probation:
            if w >= 0:
                best[w] = max(best[w], weighted)
            else:
                false_part += weighted
        if w >= 0 and i == windows[w][1]:
            previous_right, previous_width = i, float(windows[w][1] - windows[w][0] + 1)
    return false_part + sum(best.values())


@dataclass
class Tally:
    windows: int = 0
    detected: int = 0
    delays: list[int] = field(default_factory=list)
    per_excursion: list[int] = field(default_factory=list)
    false_onsets: int = 0
    steps: int = 0
    anomalies: int = 0
    raw: float = 0.0
    null: float = 0.0
    perfect: float = 0.0

    def add(self, alarms: np.ndarray, series: Series, anomalies: int) -> None:
        inside = np.zeros(len(alarms), dtype=bool)
        for first, last in series.windows:
            inside[first : last + 1] = True
            hits = np.flatnonzero(alarms[first : last + 1])
            self.windows += 1
            if len(hits):
                self.detected += 1
                self.delays.append(int(hits[0]))
                self.per_excursion.append(len(hits))
        self.false_onsets += int((alarms & ~inside).sum())
        self.steps += len(alarms)
        self.anomalies += anomalies
        self.raw += nab_raw_score(alarms, series.windows, STANDARD_PROFILE)
        self.null += nab_raw_score(np.zeros(len(alarms), bool), series.windows, STANDARD_PROFILE)
        perfect = np.zeros(len(alarms), bool)
        for first, _last in series.windows:
            perfect[first] = True
        self.perfect += nab_raw_score(perfect, series.windows, STANDARD_PROFILE)

    def summary(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "recall": round(self.detected / self.windows, 3) if self.windows else None,
            "delay_median_h": float(np.median(self.delays)) if self.delays else None,
            "false_onsets_per_1000": round(1000.0 * self.false_onsets / max(self.steps, 1), 2),
            "anomalies_per_detected_excursion": round(float(np.mean(self.per_excursion)), 2)
            if self.per_excursion
            else None,
            "max_anomalies_in_one_excursion": max(self.per_excursion, default=0),
            "anomalies": self.anomalies,
            "nab_standard": round(100.0 * (self.raw - self.null) / (self.perfect - self.null), 1)
            if self.perfect != self.null
            else None,
        }


# ---- burst sensitivity --------------------------------------------------------------------------


def smallest_burst(
    config: DetectorConfig,
    *,
    carry_state: bool,
    mean: float = 3.7,
    launches: float = 1000.0,
    within: int = 1,
    history_hours: int = HISTORY_HOURS,
) -> int | None:
    """Smallest count in one hour, against exactly ``mean`` an hour before, that an anomaly is created for
    within ``within`` hours (the hours after the burst back at ``mean``, rounded down)."""
    hours = history_hours + 3
    minutes = pd.date_range("2026-11-02", periods=hours, freq="h", tz="UTC")
    rng = np.random.default_rng(5)
    base = rng.poisson(mean, hours).astype(float)  # a plausible, not a constant, history
    for burst in range(int(mean) + 1, 200):
        crashes = base.copy()
        crashes[history_hours] = burst
        series = Series("burst", minutes, crashes, np.full(hours, launches), np.zeros(hours, int))
        alarms, _ = run_detector(
            series, config, carry_state=carry_state, first_pass=history_hours, history_hours=history_hours
        )
        if alarms[history_hours : history_hours + within].any():
            return burst
    return None


DETECTORS: dict[str, tuple[DetectorConfig, bool]] = {
    "detector": (DetectorConfig(), True),
    "poisson": (DetectorConfig(spike_dispersion=False, spike_step_minutes=1), False),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="four of the ten series")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--history-hours",
        type=int,
        default=HISTORY_HOURS,
        help="hours of counts each pass gets (default the lookback, 336)",
    )
    args = parser.parse_args(argv)
    paths = sorted(args.data.glob("*.csv"))
    if not paths:
        print(f"no CSV series in {args.data}", file=sys.stderr)
        return 2
    if args.quick:
        paths = paths[::3]
    started = time.perf_counter()
    tallies = {name: Tally() for name in [*DETECTORS, "zscore"]}
    per_series: dict[str, dict[str, Any]] = {}
    for path in paths:
        series = load_series(path)
        per_series[series.name] = {
            "steps": len(series.crashes),
            "windows": len(series.windows),
            "dispersion_hourly": round(_dispersion(series), 1),
        }
        for name, (config, carry) in DETECTORS.items():
            alarms, anomalies = run_detector(series, config, carry_state=carry, history_hours=args.history_hours)
            tallies[name].add(alarms, series, anomalies)
            per_series[series.name][name] = int(alarms.sum())
        alarms = run_zscore(series)
        tallies["zscore"].add(alarms, series, int(alarms.sum()))
        per_series[series.name]["zscore"] = int(alarms.sum())
    budget = DetectorConfig().budget("spike") / (7 * 24) * 1000.0
    hours = sum(t["steps"] for t in per_series.values())
    print(
        f"history {args.history_hours} h per pass; real data: {len(paths)} crash-rate series, {hours} hours, "
        f"{platform.processor() or platform.machine()}, {time.perf_counter() - started:.0f} s"
    )
    print(f"spike budget {DetectorConfig().budget('spike')} alarms/week per stream = {budget:.2f} per 1,000 hours")
    header = ("detector", "recall", "delay h", "false/1000", "anom/exc", "max/exc", "anomalies", "NAB std")
    print("  ".join(f"{h:>10}" for h in header))
    summary: dict[str, Any] = {
        "bench": "real_data",
        "quick": args.quick,
        "series": len(paths),
        "history_hours": args.history_hours,
        "budget_per_1000": round(budget, 2),
    }
    for name, tally in tallies.items():
        s = tally.summary()
        summary[name] = s
        print(
            "  ".join(
                f"{v!s:>10}"
                for v in (
                    name,
                    s["recall"],
                    s["delay_median_h"],
                    s["false_onsets_per_1000"],
                    s["anomalies_per_detected_excursion"],
                    s["max_anomalies_in_one_excursion"],
                    s["anomalies"],
                    s["nab_standard"],
                )
            )
        )
    for name, (config, carry) in DETECTORS.items():
        one = smallest_burst(config, carry_state=carry, within=1, history_hours=args.history_hours)
        two = smallest_burst(config, carry_state=carry, within=2, history_hours=args.history_hours)
        summary[name]["burst_at_mean_3_7"] = {"within_1h": one, "within_2h": two}
        print(f"{name}: smallest one-hour burst against 3.7/h seen within 1 h: {one}, within 2 h: {two}")
    summary["per_series"] = per_series
    print(json.dumps(summary))
    return 0


def _dispersion(series: Series) -> float:
    """Pearson dispersion of the whole series' hourly counts against its mean rate (a description)."""
    rate = series.crashes.sum() / series.launches.sum()
    expected = rate * series.launches
    return float(((series.crashes - expected) ** 2 / expected).sum() / (len(expected) - 1))


if __name__ == "__main__":
    sys.exit(main())
