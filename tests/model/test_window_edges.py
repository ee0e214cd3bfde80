"""No alarm from a window's edge: passes swept across every boundary on data whose rates never change."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detector.model import DetectorConfig, detect_anomalies
from detector.model.simulate import SimDeploy, SimSignature, simulate_project

START = pd.Timestamp("2026-11-20 00:00", tz="UTC")
MIN = pd.Timedelta(minutes=1)
HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)


def loaded(data: dict, at: pd.Timestamp, config: DetectorConfig) -> dict:
    """The frames a pass at ``at`` loads (``detector.detection.load_frames``): the last day, and the
    baseline span before the oldest deploy still watched."""
    deploys = data["deploys"][data["deploys"]["deployed_at"] <= at]
    start = at - DAY
    watched = deploys["deployed_at"][deploys["deployed_at"] > at - pd.Timedelta(minutes=config.deploy_watch_minutes)]
    if len(watched):
        start = min(start, watched.min() - pd.Timedelta(minutes=config.baseline_max_minutes))
    start, end = start.floor("min"), at.floor("min")

    def within(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[(frame["minute"] >= start) & (frame["minute"] <= end)]

    return {
        "sig_counts": within(data["sig_counts"]),
        "session_counts": within(data["session_counts"]),
        "signatures": data["signatures"],
        "deploys": deploys,
    }


def boundaries(deploys: list[SimDeploy], config: DetectorConfig, end: pd.Timestamp) -> list[pd.Timestamp]:
    """Pass times on both sides of every edge a deploy makes: watch end, loaded window, baseline
    ageing, spike window, supersession, grace."""
    offsets = [
        config.deploy_watch_minutes,
        24 * 60,
        config.baseline_max_minutes,
        config.spike_window_minutes,
        config.deploy_grace_minutes,
        10,
        60,
    ]
    times = []
    for deploy in deploys:
        for offset in offsets:
            for step in (-1, 0, 1):
                at = deploy.deployed_at + (offset + step) * MIN
                if at < end:
                    times.append(at)
    return sorted(set(times))


def test_passes_across_every_window_boundary_find_nothing_when_rates_never_change():
    rng = np.random.default_rng(20261203)
    config = DetectorConfig()
    background = [SimSignature(i, 0.0005 * (i % 7 + 1)) for i in range(1, 31)]
    deploys = [
        # hourly during the day, with old tabs lingering on every replaced release
        *[SimDeploy(i + 1, f"web@1.{i + 1}.0", START + DAY + (8 + i) * HOUR, final_share=0.97) for i in range(8)],
        # a canary going 5 % -> 25 % -> 100 %, then a daily cadence with a deploy at night
        SimDeploy(20, "web@2.0.0", START + DAY + 20 * HOUR, final_share=0.05),
        SimDeploy(21, "web@2.0.0", START + DAY + 21 * HOUR, final_share=0.25),
        SimDeploy(22, "web@2.0.0", START + DAY + 22 * HOUR, final_share=1.0),
        SimDeploy(30, "web@2.1.0", START + 2 * DAY + 3 * HOUR, final_share=0.97),
    ]
    end = START + 3 * DAY + 6 * HOUR
    data = simulate_project(
        start=START,
        end=end,
        sessions_per_minute=60.0,
        signatures=background,
        deploys=deploys,
        rng=rng,
        diurnal_amplitude=0.7,
    )
    alarms = []
    for at in boundaries(deploys, config, end):
        alarms += [
            (at, f.kind, f.signature_id, f.deploy_id)
            for f in detect_anomalies(**loaded(data, at, config), at=at, config=config)
        ]
    assert alarms == []
