"""Time one detection pass over 10,000 active signatures and 24 h of minute counts.

Run: python bench/model_pass.py [--signatures 10000] [--repeat 3]
Prints the number of count rows, the findings and the best wall time of the pass (data generation
is not timed).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from detector.model import DetectorConfig, detect_anomalies
from detector.model.simulate import SimDeploy, SimSignature, simulate_project


def build(n_signatures: int, seed: int) -> tuple[dict[str, pd.DataFrame], pd.Timestamp]:
    rng = np.random.default_rng(seed)
    at = pd.Timestamp("2026-11-27 18:00", tz="UTC")
    # heavy-tailed signature rates: a few frequent errors, a long tail of rare ones
    rates = np.minimum(rng.lognormal(mean=-9.0, sigma=1.5, size=n_signatures), 0.05)
    signatures = [SimSignature(i + 1, float(r)) for i, r in enumerate(rates)]
    signatures.append(SimSignature(n_signatures + 1, 0.0, {"web@2.0.0": 0.05}, title="TypeError: seed"))
    deploy = SimDeploy(1, "web@2.0.0", at - pd.Timedelta(hours=3), rollout_minutes=10, final_share=0.8)
    data = simulate_project(
        start=at - pd.Timedelta(hours=24),
        end=at + pd.Timedelta(minutes=1),
        sessions_per_minute=2000.0,
        signatures=signatures,
        deploys=[deploy],
        rng=rng,
    )
    return data, at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--signatures", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    data, at = build(args.signatures, args.seed)
    config = DetectorConfig()
    timings = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        findings = detect_anomalies(
            data["sig_counts"], data["session_counts"], data["signatures"], data["deploys"], at, config
        )
        timings.append(time.perf_counter() - began)
    active = data["sig_counts"]["signature_id"].nunique()
    print(
        f"signatures active: {active}  count rows: {len(data['sig_counts'])}  "
        f"session rows: {len(data['session_counts'])}"
    )
    for finding in findings:
        print(
            f"  {finding.kind:<18} sig={finding.signature_id} crossed_at={finding.crossed_at} "
            f"score={finding.score:.2f} rate={finding.rate:.4f} baseline={finding.baseline_rate:.4f}"
        )
    print(f"pass time: best {min(timings):.3f} s over {args.repeat} runs")


if __name__ == "__main__":
    main()
