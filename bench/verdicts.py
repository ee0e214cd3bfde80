"""Time to verdict, and the verdict's two error rates, on simulated releases (`python -m bench.verdicts`).

Model level: `detector.model.simulate.simulate_project` frames go through the detector's own pass
(`detect_anomalies`, for the anomalies that make a deploy fail) and counts (`release_exposures`), judged by
`deploy_verdict` as the worker does, with a pass every `--step` simulated minutes for an hour after each
deploy. A release replaces the previous one after two hours (its baseline), rolling out over 5 minutes.

Prints, per traffic level (sessions a minute) and base errored-session rate:
* benign (the new release's rates unchanged): share healthy within 15/30/60 minutes, median minutes,
  share inconclusive at the end of the watch, share failing (false failing);
* bad (a new signature on 1 % of sessions, or every signature x2): median minutes to failing, the
  first pass that reported the detector's anomaly, and the share of runs failing within the hour;
then the two error rates on their own (more runs, no curves): false failing of unchanged releases, and
false healthy of releases whose true rate sits exactly at the margin (vectorised, the rule itself).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from detector.model import DetectorConfig, detect_anomalies
from detector.model.exposure import release_exposures
from detector.model.simulate import SimDeploy, SimSignature, simulate_project
from detector.model.verdict import (
    AnomalySummary,
    VerdictPolicy,
    VerdictStatus,
    deploy_verdict,
    first_healthy_minutes,
)

START = pd.Timestamp("2026-11-02 08:00", tz="UTC")
BASELINE_MINUTES = 120
WATCH = 60
DEPLOY_KINDS = ("new_signature", "regression", "release_error_rate")


@dataclass(frozen=True)
class Run:
    healthy_minute: int | None
    failing_minute: int | None
    anomaly_minute: int | None
    final: VerdictStatus


def simulate(seed: int, per_minute: float, base: float, impact: str) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    deployed = START + pd.Timedelta(minutes=BASELINE_MINUTES)
    factor = 2.0 if impact == "x2" else 1.0
    signatures = [
        SimSignature(
            i + 1,
            base * share,
            release_rates={"web@1.1.0": base * share * factor},
            first_seen=START - pd.Timedelta(days=3),
        )
        for i, share in enumerate((0.5, 0.3, 0.2))
    ]
    if impact == "new1%":
        signatures.append(SimSignature(99, 0.0, release_rates={"web@1.1.0": 0.01}, title="TypeError: x.map"))
    return simulate_project(
        start=START,
        end=deployed + pd.Timedelta(minutes=WATCH + 1),
        sessions_per_minute=per_minute,
        signatures=signatures,
        deploys=[
            SimDeploy(1, "web@1.0.0", START - pd.Timedelta(days=1)),
            SimDeploy(2, "web@1.1.0", deployed, rollout_minutes=5, final_share=0.98),
        ],
        rng=rng,
        diurnal_amplitude=0.0,
    )


def one_run(seed: int, per_minute: float, base: float, impact: str, step: int, policy: VerdictPolicy) -> Run:
    frames = simulate(seed, per_minute, base, impact)
    config = DetectorConfig(deploys_per_week=7)
    deployed = START + pd.Timedelta(minutes=BASELINE_MINUTES)
    counts = (frames["sig_counts"], frames["session_counts"], frames["signatures"], frames["deploys"])
    failing = anomaly = healthy = None
    verdict = None
    for minute in range(step, WATCH + 1, step):
        at = deployed + pd.Timedelta(minutes=minute)
        findings = detect_anomalies(**frames, at=at, config=config)
        mine = [f for f in findings if f.deploy_id == 2 and f.kind in DEPLOY_KINDS]
        if mine and anomaly is None:
            anomaly = minute  # the first pass that reports it (its `crossed_at` may be earlier)
        summaries = [AnomalySummary(0, f.kind, f.title, None, evidence=f.details.get("evidence")) for f in mine]
        (exposure,) = [
            e for e in release_exposures(*counts, at, watch_minutes=WATCH, config=config) if e.deploy_id == 2
        ]
        verdict = deploy_verdict(exposure, summaries, policy, at.to_pydatetime())
        if verdict.status == VerdictStatus.FAILING:
            failing = minute
            break
        if verdict.status == VerdictStatus.HEALTHY and healthy is None:
            healthy = verdict.healthy_after_minutes
            if impact == "none":
                break  # sticky; the false-failing share is measured below on its own
    assert verdict is not None
    return Run(healthy, failing, anomaly, verdict.status)


def curves(args: argparse.Namespace, policy: VerdictPolicy) -> None:
    print(f"benign releases ({args.runs} runs a cell, a pass every {args.step} min, watch {WATCH} min)")
    print(f"{'sessions/min':>12} {'base':>6} {'<=15m':>6} {'<=30m':>6} {'<=60m':>6} {'median':>7} {'incon.':>7}")
    for per_minute in args.traffic:
        for base in args.base:
            runs = [one_run(s, per_minute, base, "none", args.step, policy) for s in range(args.runs)]
            minutes = np.array([r.healthy_minute if r.healthy_minute is not None else np.inf for r in runs])
            shares = [np.mean(minutes <= m) for m in (15, 30, 60)]
            median = np.median(minutes)
            incon = np.mean([r.final == VerdictStatus.INCONCLUSIVE or r.healthy_minute is None for r in runs])
            print(
                f"{per_minute:>12.0f} {base:>6.1%} {shares[0]:>6.0%} {shares[1]:>6.0%} {shares[2]:>6.0%} "
                f"{median:>7.0f} {incon:>7.0%}"
            )
    print("\nbad releases: minutes to failing (median) against the first pass reporting the anomaly (median)")
    print(f"{'sessions/min':>12} {'base':>6} {'impact':>7} {'failing':>8} {'anomaly':>8} {'<=60m':>6}")
    for per_minute in args.traffic:
        for base in args.base:
            for impact in ("new1%", "x2"):
                runs = [one_run(s + 10_000, per_minute, base, impact, args.step, policy) for s in range(args.runs)]
                fail = np.array([r.failing_minute if r.failing_minute is not None else np.inf for r in runs])
                crossed = np.array([r.anomaly_minute if r.anomaly_minute is not None else np.inf for r in runs])
                print(
                    f"{per_minute:>12.0f} {base:>6.1%} {impact:>7} {np.median(fail):>8.0f} "
                    f"{np.median(crossed):>8.0f} {np.mean(np.isfinite(fail)):>6.0%}"
                )


def false_failing(runs: int, policy: VerdictPolicy) -> tuple[int, int]:
    """Unchanged releases (300 sessions a minute, base 0.5-2 %) judged once at the end of the watch."""
    config = DetectorConfig(deploys_per_week=7)
    deployed = START + pd.Timedelta(minutes=BASELINE_MINUTES)
    at = deployed + pd.Timedelta(minutes=WATCH)
    failing = total = 0
    for seed in range(runs):
        base = (0.005, 0.01, 0.02)[seed % 3]
        frames = simulate(seed + 50_000, 300, base, "none")
        mine = [
            AnomalySummary(0, f.kind, f.title, None, evidence=f.details.get("evidence"))
            for f in detect_anomalies(**frames, at=at, config=config)
            if f.deploy_id == 2 and f.kind in DEPLOY_KINDS
        ]
        failing += any(a.evidence is None or a.evidence >= math.log(1 / policy.failing_alpha) for a in mine)
        total += 1
    return failing, total


def false_healthy(runs: int, policy: VerdictPolicy) -> list[tuple[float, float, float]]:
    """Releases at exactly the margin of the true old rate, the old rate estimated from a two-hour
    baseline, rolled out over 5 minutes to 98 %, polled every minute for the watch: (old, per_minute, share)."""
    rng = np.random.default_rng(7)
    share = np.minimum(np.arange(1, WATCH + 1) / 5, 1.0) * 0.98
    rows = []
    for old in (0.002, 0.005, 0.01, 0.02, 0.05):
        for per_minute in (100, 300, 1000):
            baseline = per_minute * BASELINE_MINUTES
            truth = float(policy.margin(old))
            old_errored = rng.binomial(baseline, old, size=runs)
            started = rng.poisson(per_minute * share, size=(runs, WATCH))
            errored = rng.binomial(started, truth)
            healthy = first_healthy_minutes(started, errored, old_errored, baseline, policy) >= 0
            rows.append((old, per_minute, float(healthy.mean())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs per cell of the curves")
    parser.add_argument("--step", type=int, default=2, help="simulated minutes between passes")
    parser.add_argument("--traffic", type=float, nargs="+", default=[30, 100, 300, 1000])
    parser.add_argument("--base", type=float, nargs="+", default=[0.005, 0.01, 0.02])
    parser.add_argument("--null-runs", type=int, default=600, help="runs of the false-failing measurement")
    parser.add_argument("--margin-runs", type=int, default=5_000, help="runs per cell of the false-healthy one")
    parser.add_argument("--quick", action="store_true", help="5 runs a cell, 300 and 1000 sessions a minute")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.traffic, args.null_runs, args.margin_runs = 5, [300, 1000], 150, 1000
    policy = VerdictPolicy()
    began = time.time()
    curves(args, policy)
    failing, total = false_failing(args.null_runs, policy)
    print(
        f"\nfalse failing (unchanged releases, 300 sessions/min, base 0.5-2 %): "
        f"{failing}/{total} = {failing / total:.2%}"
    )
    print(f"false healthy at the margin ({args.margin_runs} runs a cell; bound {policy.alpha:.0%}):")
    for old, per_minute, share in false_healthy(args.margin_runs, policy):
        print(f"  old {old:.1%} at {per_minute:>5.0f} sessions/min: {share:.2%}")
    print(f"({time.time() - began:.0f} s)")


if __name__ == "__main__":
    main()
