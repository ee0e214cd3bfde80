"""Segment tests: a deploy's new or regressed signature that is concentrated in one browser segment
(family and major version) is tested against that segment's sessions (pure; no database).

A bug in one browser that crashes 4 % of its sessions is diluted below the new-signature floor when the
browser holds 3 % of the traffic; tested against the browser's own sessions it is not. Each of the
release's segments is a separate test of the same signature, so the threshold is raised by the log of the
number of segments tested (Bonferroni): the signature's segment tests together spend what one stream's
test spends. A segment finding shares its key with the signature's overall finding after the same deploy
(one anomaly), and says its segment in ``details``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from detector.model.config import DetectorConfig
from detector.model.findings import Finding
from detector.model.sequential import (
    eprocess_threshold,
    group_starts,
    grouped_cummax,
    grouped_cumsum,
    mixture_log_evidence,
    mixture_log_evidence_vs_estimate,
)

SEGMENT_SESSION_COLUMNS = ("release", "environment", "segment", "minute", "started")
SEGMENT_SIG_COLUMNS = ("signature_id", "release", "environment", "segment", "minute", "events", "users", "sessions")


class SegmentInputError(ValueError):
    """A segment frame lacks a required column."""


@dataclass(frozen=True)
class SegmentCounts:
    """The two segment frames, cut to minutes <= ``at`` and without suppressed noise, in minutes.

    ``sig_counts`` rows count, per (signature, release, environment, segment, minute), the events and the
    distinct users and sessions first affected in that minute (so cumulative sums are distinct counts)."""

    sessions: pd.DataFrame
    sig_counts: pd.DataFrame
    grace_ids: frozenset[int]
    noisy_ids: frozenset[int]


@dataclass(frozen=True)
class SegmentDeploy:
    """What the segment tests need of one deploy's overall tests."""

    environment: str
    release: str
    deploy_id: int
    origin: int
    """Deploy minute (minutes since the epoch)."""
    at: pd.Timestamp
    at_minute: int
    lookback: int
    per_week: float
    new_ids: frozenset[int]
    """Signatures tested against the floor rate (new, and dormant ones)."""
    dormant_ids: frozenset[int]
    """Of ``new_ids``, those reported as regressions (known before, without counts before the deploy)."""
    known_ids: frozenset[int]
    """Signatures tested against their pre-deploy rate."""
    previous_release: str | None
    release_sessions: float
    """Sessions started on the release since the deploy (all segments): the findings' overall rate."""
    titles: dict[int, str] = field(default_factory=dict)
    first_seen: dict[int, pd.Timestamp] = field(default_factory=dict)


def prepare_segment_counts(
    segment_sessions: pd.DataFrame,
    segment_sig_counts: pd.DataFrame,
    signatures: pd.DataFrame,
    at_minute: int,
    config: DetectorConfig,
) -> SegmentCounts:
    """Check and cut the segment frames (rows after ``at_minute`` and suppressed noise dropped)."""
    for frame, columns, name in (
        (segment_sessions, SEGMENT_SESSION_COLUMNS, "segment_sessions"),
        (segment_sig_counts, SEGMENT_SIG_COLUMNS, "segment_sig_counts"),
    ):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SegmentInputError(f"{name} lacks columns {missing}")
    noise = signatures["noise_class"].astype(object).where(signatures["noise_class"].notna(), None)
    ids = signatures["signature_id"].to_numpy(np.int64)
    suppressed = ids[noise.isin(list(config.suppressed_noise_classes)).to_numpy()]
    grace = frozenset(ids[noise.isin(list(config.grace_noise_classes)).to_numpy()].tolist())
    noisy = noise.notna().to_numpy() | ~signatures["in_app"].fillna(True).astype(bool).to_numpy()
    sessions = _with_minutes(segment_sessions[list(SEGMENT_SESSION_COLUMNS)], at_minute)
    sig_counts = _with_minutes(segment_sig_counts[list(SEGMENT_SIG_COLUMNS)], at_minute)
    sig_counts = sig_counts[~sig_counts["signature_id"].isin(suppressed)]
    return SegmentCounts(
        sessions=sessions, sig_counts=sig_counts, grace_ids=grace, noisy_ids=frozenset(ids[noisy].tolist())
    )


def _with_minutes(frame: pd.DataFrame, at_minute: int) -> pd.DataFrame:
    frame = frame.astype({"release": str, "environment": str, "segment": str})
    index = pd.DatetimeIndex(pd.to_datetime(frame["minute"], utc=True)).tz_convert("UTC").tz_localize(None)
    minutes = index.to_numpy().astype("datetime64[m]").astype(np.int64)
    frame = frame.assign(minute=minutes)
    return frame[frame["minute"] <= at_minute]


def with_segment_findings(
    findings: list[Finding], counts: SegmentCounts | None, deploy: SegmentDeploy, config: DetectorConfig
) -> list[Finding]:
    """``findings`` of one deploy with its segment findings merged in: a signature found overall keeps its
    finding, with the segment's ``details`` added; one found in a segment only is added. Unchanged when
    ``counts`` is None (callers without segment data)."""
    if counts is None:
        return findings
    by_key = {f.key: f for f in segment_findings(counts, deploy, config)}
    merged = [
        replace(f, details={**f.details, **by_key.pop(f.key).details}) if f.key in by_key else f for f in findings
    ]
    return merged + list(by_key.values())


def segment_findings(counts: SegmentCounts, deploy: SegmentDeploy, config: DetectorConfig) -> list[Finding]:
    """One finding per signature of the deploy that crossed in a segment holding at least
    ``segment_min_concentration`` of its affected sessions (the earliest such crossing)."""
    tested = deploy.new_ids | deploy.known_ids
    if not tested:
        return []
    sessions = counts.sessions
    in_env = sessions["environment"] == deploy.environment
    post = sessions[in_env & (sessions["release"] == deploy.release) & (sessions["minute"] >= deploy.origin)]
    started_by_segment = post.groupby("segment")["started"].sum()
    total_started = float(started_by_segment.sum())
    if total_started <= 0:
        return []
    eligible = started_by_segment[started_by_segment >= config.segment_min_share * total_started]
    n_segments = max(len(eligible), 1)

    sig = counts.sig_counts
    rows = sig[
        (sig["environment"] == deploy.environment)
        & (sig["release"] == deploy.release)
        & (sig["minute"] >= deploy.origin)
        & sig["signature_id"].isin(list(tested))
    ]
    if counts.grace_ids:
        in_grace = rows["signature_id"].isin(list(counts.grace_ids)) & (
            rows["minute"] < deploy.origin + config.deploy_grace_minutes
        )
        rows = rows[~in_grace]
    if rows.empty:
        return []
    # Concentration: the segment's share of the signature's affected sessions (all segments) so far.
    all_segments = rows.groupby(["signature_id", "minute"], as_index=False)["sessions"].sum()
    all_segments = all_segments.sort_values(["signature_id", "minute"])
    all_segments["all_cum"] = all_segments.groupby("signature_id")["sessions"].cumsum()
    rows = rows[rows["segment"].isin(eligible.index)]
    if rows.empty:
        return []
    rows = rows.groupby(["signature_id", "segment", "minute"], as_index=False)[["events", "users", "sessions"]].sum()
    rows = rows.sort_values(["signature_id", "segment", "minute"], kind="stable").reset_index(drop=True)
    rows = rows.merge(all_segments[["signature_id", "minute", "all_cum"]], on=["signature_id", "minute"], how="left")

    exposure = _cumulative_exposure(post, eligible.index, deploy)
    sig_ids = rows["signature_id"].to_numpy(np.int64)
    segment_codes = pd.factorize(rows["segment"])[0]
    start = group_starts(sig_ids) | group_starts(segment_codes)
    codes = np.cumsum(start) - 1
    cum_sessions = grouped_cumsum(rows["sessions"].to_numpy(float), start)
    cum_users = grouped_cumsum(rows["users"].to_numpy(float), start)
    segment_exposure = np.zeros(len(rows))
    offsets = rows["minute"].to_numpy(np.int64) - deploy.origin
    for segment, cumulative in exposure.items():
        in_segment = (rows["segment"] == segment).to_numpy()
        segment_exposure[in_segment] = cumulative[offsets[in_segment]]
    cum_exposure = np.maximum(segment_exposure, cum_sessions)
    concentration = cum_sessions / np.maximum(rows["all_cum"].to_numpy(float), 1.0)
    gates = (grouped_cummax(cum_users, start) >= config.min_users) & (
        grouped_cummax(cum_sessions, start) >= config.min_sessions
    )

    ratios = np.asarray(config.rate_ratios)
    bonferroni = math.log(n_segments)
    noisy = np.isin(sig_ids, list(counts.noisy_ids))
    extra = np.where(noisy, math.log(config.noisy_evidence_factor), 0.0) + bonferroni
    log_e = np.full(len(rows), -np.inf)
    thresholds = np.full(len(rows), np.inf)
    baseline_rate = np.full(len(rows), np.nan)

    is_new = np.isin(sig_ids, list(deploy.new_ids))
    if is_new.any():
        n_candidates = len(deploy.new_ids)
        threshold = eprocess_threshold(
            alarms_per_week=config.budget("new_signature"),
            tests_per_week=deploy.per_week * max(config.new_signature_streams_per_deploy, n_candidates),
        )
        floor = config.new_signature_floor_rate
        log_e[is_new] = mixture_log_evidence(cum_sessions[is_new], floor * cum_exposure[is_new], ratios)
        thresholds[is_new] = threshold + extra[is_new]
        baseline_rate[is_new] = floor
    is_known = ~is_new & np.isin(sig_ids, list(deploy.known_ids))
    if is_known.any():
        base_counts, base_exposure = _segment_baselines(counts, deploy, config, rows)
        testable = is_known & (base_exposure >= config.baseline_min_sessions)
        if testable.any():
            threshold = eprocess_threshold(
                alarms_per_week=config.budget("regression"),
                tests_per_week=deploy.per_week * max(len(deploy.known_ids), 1),
            )
            log_e[testable] = mixture_log_evidence_vs_estimate(
                cum_sessions[testable], cum_exposure[testable], base_counts[testable], base_exposure[testable], ratios
            )
            thresholds[testable] = threshold + extra[testable]
            baseline_rate[testable] = base_counts[testable] / base_exposure[testable]

    # "Only this segment": most of the signature's sessions, far more than the segment's share of
    # sessions, both when the test crossed and now (an early majority may be chance).
    share_now = np.array([float(started_by_segment.get(s, 0.0)) / total_started for s in rows["segment"]])
    concentrated = (concentration >= config.segment_min_concentration) & (
        concentration >= config.segment_min_lift * np.maximum(share_now, 1e-12)
    )
    last_of_group = np.append(start[1:], True)
    all_total = all_segments.groupby("signature_id")["sessions"].sum()
    share_at_end = cum_sessions[last_of_group] / np.maximum(all_total.reindex(sig_ids[last_of_group]).to_numpy(), 1.0)
    concentrated_now = (
        (share_at_end >= config.segment_min_concentration)
        & (share_at_end >= config.segment_min_lift * share_now[last_of_group])
    )[codes]
    alarm = (log_e >= thresholds) & gates & concentrated & concentrated_now
    if not alarm.any():
        return []
    frame = pd.DataFrame(
        {"code": codes, "row": np.arange(len(rows)), "minute": rows["minute"].to_numpy(), "score": log_e / thresholds}
    )
    best = frame.groupby("code")["score"].max()
    first = frame[alarm].groupby("code").first()
    last_row = frame.groupby("code")["row"].max()
    findings: dict[int, tuple[int, Finding]] = {}
    for code, hit in first.iterrows():
        row = int(hit["row"])
        sig_id = int(sig_ids[row])
        first_row = int(np.flatnonzero(codes == code)[0])
        finding = _finding(
            deploy,
            rows,
            first_row,
            row,
            int(last_row[code]),
            exposure,
            n_segments,
            float(best[code]),
            float(baseline_rate[row]),
            float(concentration[row]),
            is_new[row],
        )
        minute = int(hit["minute"])
        if sig_id not in findings or minute < findings[sig_id][0]:
            findings[sig_id] = (minute, finding)
    return [f for _, f in findings.values()]


def _cumulative_exposure(post: pd.DataFrame, segments: pd.Index, deploy: SegmentDeploy) -> dict[str, np.ndarray]:
    """Sessions started in each segment on the release, cumulative per minute since the deploy."""
    length = deploy.at_minute - deploy.origin + 1
    result: dict[str, np.ndarray] = {}
    for segment, group in post[post["segment"].isin(segments)].groupby("segment"):
        per_minute = np.bincount(
            group["minute"].to_numpy(np.int64) - deploy.origin,
            weights=group["started"].to_numpy(float),
            minlength=length,
        )[:length]
        result[str(segment)] = np.cumsum(per_minute)
    return result


def _segment_baselines(
    counts: SegmentCounts, deploy: SegmentDeploy, config: DetectorConfig, rows: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the signature's affected sessions in the row's segment before the deploy (plus a pseudo
    session) and the segment's sessions started then, on the release deployed before (all releases of
    the environment where that release has fewer than ``baseline_min_sessions`` there)."""
    sessions, sig = counts.sessions, counts.sig_counts
    window_s = (
        (sessions["environment"] == deploy.environment)
        & (sessions["minute"] < deploy.origin)
        & (sessions["minute"] >= deploy.origin - deploy.lookback)
    )
    window_g = (
        (sig["environment"] == deploy.environment)
        & (sig["minute"] < deploy.origin)
        & (sig["minute"] >= deploy.origin - deploy.lookback)
    )
    pre_s, pre_g = sessions[window_s], sig[window_g]
    all_started = pre_s.groupby("segment")["started"].sum()
    all_affected = pre_g.groupby(["signature_id", "segment"])["sessions"].sum()
    if deploy.previous_release is not None:
        prev_started = pre_s[pre_s["release"] == deploy.previous_release].groupby("segment")["started"].sum()
        prev_affected = (
            pre_g[pre_g["release"] == deploy.previous_release].groupby(["signature_id", "segment"])["sessions"].sum()
        )
    else:
        prev_started, prev_affected = pd.Series(dtype=float), pd.Series(dtype=float)
    base_counts = np.zeros(len(rows))
    base_exposure = np.zeros(len(rows))
    for i, (sig_id, segment) in enumerate(zip(rows["signature_id"].tolist(), rows["segment"].tolist(), strict=True)):
        if float(prev_started.get(segment, 0.0)) >= config.baseline_min_sessions:
            started, affected = prev_started, prev_affected
        else:
            started, affected = all_started, all_affected
        base_exposure[i] = float(started.get(segment, 0.0))
        base_counts[i] = float(affected.get((sig_id, segment), 0.0)) + 1.0
    return base_counts, base_exposure


def _finding(
    deploy: SegmentDeploy,
    rows: pd.DataFrame,
    first_row: int,
    row: int,
    last_row: int,
    exposure: dict[str, np.ndarray],
    n_segments: int,
    score: float,
    baseline_rate: float,
    concentration: float,
    is_new: bool,
) -> Finding:
    sig_id = int(rows["signature_id"].iloc[row])
    segment = str(rows["segment"].iloc[row])
    span = rows.iloc[first_row : last_row + 1]
    affected = float(span["sessions"].sum())
    segment_sessions = max(float(exposure[segment][-1]), affected)
    kind = "regression" if (not is_new or sig_id in deploy.dormant_ids) else "new_signature"
    crossed = pd.Timestamp(int(rows["minute"].iloc[row]) * 60, unit="s", tz="UTC")
    first_minute = pd.Timestamp(int(span["minute"].iloc[0]) * 60, unit="s", tz="UTC")
    release_sessions = max(deploy.release_sessions, affected)
    return Finding(
        kind=kind,
        signature_id=sig_id,
        title=deploy.titles.get(sig_id, ""),
        release=deploy.release,
        environment=deploy.environment,
        deploy_id=deploy.deploy_id,
        first_seen=deploy.first_seen.get(sig_id, first_minute),
        detected_at=deploy.at,
        crossed_at=crossed,
        events=int(span["events"].sum()),
        users=int(span["users"].sum()),
        sessions_affected=int(affected),
        rate=affected / release_sessions if release_sessions > 0 else float("nan"),
        baseline_rate=baseline_rate,
        score=score,
        key=f"{kind}:{sig_id}:{deploy.deploy_id}",
        details={
            "segment": segment,
            "summary": f"{segment} only: {_percent(affected / segment_sessions)} of its sessions",
            "segment_rate": round(affected / segment_sessions, 6) if segment_sessions > 0 else None,
            "segment_baseline_rate": baseline_rate,
            "segment_sessions": int(segment_sessions),
            "segment_sessions_affected": int(affected),
            "segment_share_of_affected": round(concentration, 4),
            "segment_share_of_sessions": round(segment_sessions / release_sessions, 4) if release_sessions else None,
            "segments_tested": n_segments,
        },
    )


def _percent(rate: float) -> str:
    """As the alerts write rates: one decimal."""
    return f"{rate * 100:.1f}%"
