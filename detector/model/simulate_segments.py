"""Seeded synthetic deploys with browser segments, in the detector's input frames (tests, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

BROWSER_MIX: dict[str, float] = {
    "Chrome 131": 0.42,
    "Chrome 130": 0.15,
    "Safari 17": 0.12,
    "Edge 131": 0.1,
    "Firefox 133": 0.07,
    "Samsung Internet 26": 0.05,
    "Safari 14": 0.03,
    "Opera 114": 0.03,
    "Firefox 132": 0.03,
}
"""A storefront's browser mix; Safari 14 holds 3 % of sessions."""


@dataclass(frozen=True)
class SegmentSignature:
    """Affected-session rate of one signature per segment, before and after the deploy (a segment not
    listed has rate ``rate``); ``new`` signatures occur after the deploy only."""

    signature_id: int
    rate: float = 0.0
    segment_rates: dict[str, float] = field(default_factory=dict)
    after_rate: float | None = None
    after_segment_rates: dict[str, float] | None = None
    new: bool = False
    title: str = ""

    def rate_in(self, segment: str, after: bool) -> float:
        if after and (self.after_rate is not None or self.after_segment_rates is not None):
            rates = self.after_segment_rates or {}
            return rates.get(segment, self.after_rate if self.after_rate is not None else self.rate)
        if after or not self.new:
            return self.segment_rates.get(segment, self.rate)
        return 0.0


def simulate_segment_deploy(
    rng: np.random.Generator,
    *,
    sessions_per_minute: float,
    minutes_before: int,
    minutes_after: int,
    signatures: list[SegmentSignature],
    deployed_at: pd.Timestamp,
    mix: dict[str, float] | None = None,
    deploy_id: int = 1,
) -> dict[str, pd.DataFrame]:
    """Frames of one environment in which ``web@2`` replaces ``web@1`` at ``deployed_at`` (every session
    after it is on the new release). Each affected session is a distinct user, affected once."""
    mix = mix or BROWSER_MIX
    segments = list(mix)
    shares = np.array([mix[s] for s in segments]) / sum(mix.values())
    minutes = pd.date_range(
        deployed_at - pd.Timedelta(minutes=minutes_before), periods=minutes_before + minutes_after, freq="min", tz="UTC"
    )
    after = np.asarray(minutes >= deployed_at)
    started = rng.poisson(sessions_per_minute * shares[None, :], size=(len(minutes), len(segments)))
    release = np.where(after, "web@2", "web@1")
    session_rows = pd.DataFrame(
        {
            "release": np.repeat(release, len(segments)),
            "environment": "production",
            "segment": np.tile(segments, len(minutes)),
            "minute": np.repeat(minutes, len(segments)),
            "started": started.ravel(),
            "errored": 0,
        }
    )
    sig_frames = []
    for sig in signatures:
        rates = np.array([[sig.rate_in(s, bool(a)) for s in segments] for a in (False, True)])
        affected = rng.binomial(started, rates[after.astype(int)])
        keep = affected.ravel() > 0
        sig_frames.append(
            pd.DataFrame(
                {
                    "signature_id": sig.signature_id,
                    "release": np.repeat(release, len(segments))[keep],
                    "environment": "production",
                    "segment": np.tile(segments, len(minutes))[keep],
                    "minute": np.repeat(minutes, len(segments))[keep],
                    "events": affected.ravel()[keep],
                    "users": affected.ravel()[keep],
                    "sessions": affected.ravel()[keep],
                }
            )
        )
    columns = ["signature_id", "release", "environment", "segment", "minute", "events", "users", "sessions"]
    segment_sig_counts = pd.concat(sig_frames, ignore_index=True) if sig_frames else pd.DataFrame(columns=columns)
    sig_counts = segment_sig_counts.groupby(["signature_id", "release", "environment", "minute"], as_index=False)[
        ["events", "users", "sessions"]
    ].sum()
    session_counts = session_rows.groupby(["release", "environment", "minute"], as_index=False)[
        ["started", "errored"]
    ].sum()
    session_counts["crashed"] = 0
    first_seen = {}
    for sig in signatures:
        rows = segment_sig_counts[segment_sig_counts["signature_id"] == sig.signature_id]
        first_seen[sig.signature_id] = rows["minute"].min() if len(rows) else pd.NaT
    signature_frame = pd.DataFrame(
        {
            "signature_id": [s.signature_id for s in signatures],
            "title": [s.title or f"Error {s.signature_id}" for s in signatures],
            "first_seen": pd.to_datetime([first_seen[s.signature_id] for s in signatures], utc=True),
            "noise_class": pd.Series([None] * len(signatures), dtype=object),
            "in_app": True,
        }
    )
    deploys = pd.DataFrame(
        {"deploy_id": [deploy_id], "release": ["web@2"], "environment": ["production"], "deployed_at": [deployed_at]}
    )
    return {
        "sig_counts": sig_counts,
        "session_counts": session_counts,
        "signatures": signature_frame,
        "deploys": deploys,
        "segment_sessions": session_rows,
        "segment_sig_counts": segment_sig_counts,
    }
