"""The browser-only case: how fast the segment tests flag a crash in one browser, beside the overall test
and an oracle, and how often they alarm on null data.

    python -m bench.segments [--seeds 20] [--null-deploys 300]

A new crash hits 4 % of Safari 14's sessions; Safari 14 holds 3 % of the traffic (0.12 % of all
sessions, near the 0.1 % floor). For each traffic level, the median minutes from deploy to the crossing
of the detector with segment frames, without them (overall tests only), and of an oracle: a Poisson
CUSUM on each browser's stream that knows both rates (0.1 % floor before, 4 % after), with the
new-signature budget split over the browsers. Null data: many deploys with a new signature at the floor
rate and a known one at a steady rate, spread over all browsers or confined to one. The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from detector.model import DetectorConfig, detect_anomalies
from detector.model.oracle import OracleCusum
from detector.model.simulate_segments import BROWSER_MIX, SegmentSignature, simulate_segment_deploy

DEPLOY = pd.Timestamp("2026-11-27 14:00", tz="UTC")
WATCH = 180


def _delay(findings: list, sig: int) -> float:
    hits = [f for f in findings if f.signature_id == sig]
    return (hits[0].crossed_at - DEPLOY).total_seconds() / 60 + 1 if hits else float("inf")


def browser_only_delays(spm: float, seeds: int, config: DetectorConfig) -> dict[str, float]:
    floor = config.new_signature_floor_rate
    share = BROWSER_MIX["Safari 14"] / sum(BROWSER_MIX.values())
    oracle = OracleCusum.tuned(
        rate_before=floor,
        rate_after=0.04,
        exposure_per_minute=np.full(1440, spm * share),
        alarms_per_week=config.budget("new_signature") / len(BROWSER_MIX),
    )
    segment, overall, oracle_delays = [], [], []
    for seed in range(seeds):
        signatures = [
            SegmentSignature(1, rate=0.002),
            SegmentSignature(99, new=True, segment_rates={"Safari 14": 0.04}),
        ]
        frames = simulate_segment_deploy(
            np.random.default_rng(seed),
            sessions_per_minute=spm,
            minutes_before=240,
            minutes_after=WATCH,
            signatures=signatures,
            deployed_at=DEPLOY,
        )
        at = DEPLOY + pd.Timedelta(minutes=WATCH - 1)
        segment.append(_delay(detect_anomalies(**frames, at=at, config=config), 99))
        plain = {k: v for k, v in frames.items() if not k.startswith("segment_")}
        overall.append(_delay(detect_anomalies(**plain, at=at, config=config), 99))
        s = frames["segment_sessions"]
        s = s[(s["segment"] == "Safari 14") & (s["minute"] >= DEPLOY)].sort_values("minute")
        g = frames["segment_sig_counts"]
        g = g[(g["signature_id"] == 99) & (g["segment"] == "Safari 14")].groupby("minute")["sessions"].sum()
        counts = g.reindex(s["minute"]).fillna(0.0).to_numpy()
        found = oracle.detection_delay(counts, s["started"].to_numpy(float), 0)
        oracle_delays.append(found if found is not None else float("inf"))

    def median(values: list[float]) -> float:
        return float(np.median(values))

    return {
        "sessions_per_minute": spm,
        "segment_median_min": median(segment),
        "segment_found": float(np.isfinite(segment).mean()),
        "overall_median_min": median(overall),
        "overall_found": float(np.isfinite(overall).mean()),
        "oracle_median_min": median(oracle_delays),
        "segment_over_oracle": round(median(segment) / median(oracle_delays), 2),
    }


def null_alarms(deploys: int, config: DetectorConfig, *, confined: bool) -> dict[str, float]:
    rng = np.random.default_rng(100 + confined)
    floor = config.new_signature_floor_rate
    segment_alarms = alarms = 0
    for k in range(deploys):
        segment = list(BROWSER_MIX)[k % len(BROWSER_MIX)]
        if confined:
            signatures = [
                SegmentSignature(99, new=True, segment_rates={segment: floor}),
                SegmentSignature(7, segment_rates={segment: 0.01}),
            ]
        else:
            signatures = [SegmentSignature(99, new=True, rate=floor), SegmentSignature(7, rate=0.01)]
        frames = simulate_segment_deploy(
            rng,
            sessions_per_minute=float(rng.choice([20, 60, 200])),
            minutes_before=180,
            minutes_after=WATCH,
            signatures=signatures,
            deployed_at=DEPLOY,
        )
        findings = detect_anomalies(**frames, at=DEPLOY + pd.Timedelta(minutes=WATCH - 1), config=config)
        alarms += len(findings)
        segment_alarms += sum("segment" in f.details for f in findings)
    return {
        "confined": confined,
        "deploys": deploys,
        "segment_alarms_per_deploy": segment_alarms / deploys,
        "alarms_per_deploy": alarms / deploys,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--null-deploys", type=int, default=300)
    args = parser.parse_args()
    config = DetectorConfig(deploys_per_week=70.0)
    delays = []
    for spm in (30.0, 60.0, 100.0, 200.0, 300.0):
        delays.append(browser_only_delays(spm, args.seeds, config))
        print(delays[-1], flush=True)
    loose = DetectorConfig(deploys_per_week=10.0, alarms_per_week=4.0, new_signature_streams_per_deploy=1.0)
    nulls = []
    for name, cfg in (("default, 70 deploys/week", config), ("loose: alpha 0.1 per deploy and kind", loose)):
        for confined in (False, True):
            nulls.append({"config": name, **null_alarms(args.null_deploys, cfg, confined=confined)})
            print(nulls[-1], flush=True)
    print(json.dumps({"browser_only": delays, "null": nulls}))


if __name__ == "__main__":
    main()
