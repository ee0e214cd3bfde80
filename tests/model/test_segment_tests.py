"""Segment tests: a bug in one browser is flagged against that browser's sessions, as one anomaly with the
overall test, and null data with segments stays within the false-alarm budget."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from detector.model import DetectorConfig, detect_anomalies
from detector.model.segment_tests import SegmentInputError
from detector.model.sequential import eprocess_threshold
from detector.model.simulate_segments import BROWSER_MIX, SegmentSignature, simulate_segment_deploy

DEPLOY = pd.Timestamp("2026-11-27 14:00", tz="UTC")
REALISTIC = DetectorConfig(deploys_per_week=70.0)
"""Ten deploys a day: the thresholds a busy team's project runs with."""


def overall_only(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {k: v for k, v in frames.items() if not k.startswith("segment_")}


def safari_bug(seed: int, sessions_per_minute: float, minutes_after: int = 120) -> dict[str, pd.DataFrame]:
    """A new crash in 4 % of Safari 14's sessions (3 % of traffic: 0.12 % of all sessions), beside a
    background error in every browser."""
    signatures = [
        SegmentSignature(1, rate=0.002),
        SegmentSignature(99, new=True, segment_rates={"Safari 14": 0.04}, title="TypeError: x.at"),
    ]
    return simulate_segment_deploy(
        np.random.default_rng(seed),
        sessions_per_minute=sessions_per_minute,
        minutes_before=240,
        minutes_after=minutes_after,
        signatures=signatures,
        deployed_at=DEPLOY,
    )


def test_a_crash_in_one_browser_is_flagged_within_30_minutes_where_the_overall_test_misses_it() -> None:
    delays = []
    for seed in range(8):
        frames = safari_bug(seed, sessions_per_minute=250, minutes_after=60)
        at = DEPLOY + pd.Timedelta(minutes=59)
        overall = [f for f in detect_anomalies(**overall_only(frames), at=at, config=REALISTIC) if f.signature_id == 99]
        assert overall == []  # 0.12 % of all sessions: hardly above the floor, not seen within the hour
        (found,) = [f for f in detect_anomalies(**frames, at=at, config=REALISTIC) if f.signature_id == 99]
        assert (found.kind, found.key, found.deploy_id) == ("new_signature", "new_signature:99:1", 1)
        assert found.details["segment"] == "Safari 14"
        assert found.details["segment_share_of_affected"] == 1.0
        assert 0.02 < float(found.details["segment_rate"]) < 0.07  # type: ignore[arg-type]
        assert 0.02 < float(found.details["segment_share_of_sessions"]) < 0.04  # type: ignore[arg-type]
        assert found.details["segments_tested"] == len(BROWSER_MIX)
        assert found.rate < 0.003  # the finding's own rate stays the release-wide one
        delays.append((found.crossed_at - DEPLOY).total_seconds() / 60)
    assert float(np.median(delays)) <= 30.0
    # the same data at lower traffic takes longer: evidence, not a fixed delay
    slow = [
        f
        for f in detect_anomalies(**safari_bug(0, 60), at=DEPLOY + pd.Timedelta(minutes=119), config=REALISTIC)
        if f.signature_id == 99
    ]
    assert not slow or (slow[0].crossed_at - DEPLOY) > pd.Timedelta(minutes=min(delays))


def test_without_segment_frames_the_findings_are_those_of_the_overall_tests() -> None:
    frames = safari_bug(3, sessions_per_minute=250)
    at = DEPLOY + pd.Timedelta(minutes=119)
    plain = detect_anomalies(**overall_only(frames), at=at, config=REALISTIC)
    only_sessions = detect_anomalies(
        **overall_only(frames), at=at, config=REALISTIC, segment_sessions=frames["segment_sessions"]
    )
    assert plain == only_sessions
    assert all(f.details == {} for f in plain)


def test_a_signature_found_overall_and_in_its_segment_is_one_finding_with_the_segment() -> None:
    """A crash in 30 % of Safari 14's sessions is also above the floor overall: one finding, same key."""
    signatures = [SegmentSignature(99, new=True, segment_rates={"Safari 14": 0.3})]
    frames = simulate_segment_deploy(
        np.random.default_rng(5),
        sessions_per_minute=200,
        minutes_before=120,
        minutes_after=120,
        signatures=signatures,
        deployed_at=DEPLOY,
    )
    at = DEPLOY + pd.Timedelta(minutes=119)
    (overall,) = [f for f in detect_anomalies(**overall_only(frames), at=at, config=REALISTIC)]
    (merged,) = [f for f in detect_anomalies(**frames, at=at, config=REALISTIC)]
    assert merged.key == overall.key == "new_signature:99:1"
    assert merged.crossed_at <= overall.crossed_at
    assert merged.details["segment"] == "Safari 14"


def test_a_bug_in_every_browser_is_not_said_to_be_one_browsers() -> None:
    signatures = [SegmentSignature(99, new=True, rate=0.02)]
    frames = simulate_segment_deploy(
        np.random.default_rng(6),
        sessions_per_minute=200,
        minutes_before=120,
        minutes_after=60,
        signatures=signatures,
        deployed_at=DEPLOY,
    )
    (found,) = detect_anomalies(**frames, at=DEPLOY + pd.Timedelta(minutes=59), config=REALISTIC)
    assert found.kind == "new_signature" and "segment" not in found.details


def test_a_known_error_that_rises_in_one_browser_is_a_regression_of_that_browser() -> None:
    """A Safari 14 error at 0.5 % of its sessions before the deploy, 6 % after (rare elsewhere throughout):
    the overall test sees the tenfold rise too, and the two are one regression that names the browser."""
    signatures = [
        SegmentSignature(
            7,
            rate=0.00005,
            segment_rates={"Safari 14": 0.005},
            after_segment_rates={"Safari 14": 0.06},
            after_rate=0.00005,
        )
    ]
    frames = simulate_segment_deploy(
        np.random.default_rng(8),
        sessions_per_minute=250,
        minutes_before=600,
        minutes_after=60,
        signatures=signatures,
        deployed_at=DEPLOY,
    )
    at = DEPLOY + pd.Timedelta(minutes=59)
    (overall,) = detect_anomalies(**overall_only(frames), at=at, config=REALISTIC)
    (found,) = detect_anomalies(**frames, at=at, config=REALISTIC)
    assert overall.key == found.key
    assert (found.kind, found.key) == ("regression", "regression:7:1")
    assert found.details["segment"] == "Safari 14"
    assert 0.002 < float(found.details["segment_baseline_rate"]) < 0.012  # type: ignore[arg-type]


def test_segment_frames_need_their_columns() -> None:
    frames = safari_bug(0, 100)
    with pytest.raises(SegmentInputError, match="segment"):
        detect_anomalies(
            **{**frames, "segment_sessions": frames["segment_sessions"].drop(columns="segment")},
            at=DEPLOY + pd.Timedelta(minutes=30),
        )


def _null_alarms(config: DetectorConfig, deploys: int, *, confined: bool, seed: int) -> tuple[int, int]:
    """Segment findings (and findings of any kind) over ``deploys`` null deploys, at the end of a 3-hour
    watch: a new signature at the floor rate (in one segment only, or in every segment) and a known one
    whose rate does not change."""
    rng = np.random.default_rng(seed)
    floor = config.new_signature_floor_rate
    segment_alarms = alarms = 0
    for k in range(deploys):
        segment = list(BROWSER_MIX)[k % len(BROWSER_MIX)]
        if confined:  # the hardest null for a segment test: all of it in one segment, at the null rate
            new = SegmentSignature(99, new=True, segment_rates={segment: floor})
            known = SegmentSignature(7, segment_rates={segment: 0.01})
        else:
            new = SegmentSignature(99, new=True, rate=floor)
            known = SegmentSignature(7, rate=0.01)
        frames = simulate_segment_deploy(
            rng,
            sessions_per_minute=float(rng.choice([20, 60, 200])),
            minutes_before=180,
            minutes_after=180,
            signatures=[new, known],
            deployed_at=DEPLOY,
        )
        findings = detect_anomalies(**frames, at=DEPLOY + pd.Timedelta(minutes=179), config=config)
        alarms += len(findings)
        segment_alarms += sum("segment" in f.details for f in findings)
    return segment_alarms, alarms


def test_null_deploys_with_segments_raise_false_alarms_within_the_budget() -> None:
    """With a budget loose enough that alarms are possible (alpha per deploy and kind 0.1 for the new
    signature, 0.2 for the regression), the segment tests' false alarms stay within their Bonferroni
    bound (the kind's per-deploy alpha), on null data spread over all segments and confined to one."""
    config = DetectorConfig(deploys_per_week=10.0, alarms_per_week=4.0, new_signature_streams_per_deploy=1.0)
    deploys = 150
    alpha_new = config.budget("new_signature") / config.deploys_per_week  # type: ignore[operator]
    alpha_regression = config.budget("regression") / config.deploys_per_week  # type: ignore[operator]
    assert math.isclose(
        eprocess_threshold(alarms_per_week=config.budget("new_signature"), tests_per_week=10.0), math.log(1 / alpha_new)
    )
    bound = (alpha_new + alpha_regression) * deploys
    for confined in (False, True):
        segment_alarms, _alarms = _null_alarms(config, deploys, confined=confined, seed=int(confined))
        assert segment_alarms <= bound + 3.0 * math.sqrt(bound), (confined, segment_alarms, bound)
