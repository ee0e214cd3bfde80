"""An open anomaly follows its signature across later deploys: still present, or gone (a likely fix).

A bug a release brought stays in the releases after it until one fixes it. Each later release of the
environment is judged against the anomaly's own rate ``p`` (affected sessions per session):

* **absent**: none of its ``n`` sessions since its deploy was affected, while ``p`` would have
  affected ``n p`` of them; the chance of that if the bug were still there is ``exp(-n p)``, so it is
  said once ``n p >= log(1 / fix_alpha)`` (1 % by default: ``n p >= 4.6``).
* **present**: at least ``min_affected`` of its sessions were affected; its rate is shown beside the
  anomaly's, and called the same when it is within a factor of ``same_factor`` of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from detector.model.detect import minute_index


@dataclass(frozen=True)
class Tracked:
    """An open deploy anomaly: its signature, environment, release, deploy minute and rate."""

    anomaly_id: int
    signature_id: int
    environment: str
    release: str
    deployed_at: pd.Timestamp
    rate: float


@dataclass(frozen=True)
class FollowUp:
    """What a later release says about a tracked anomaly's signature."""

    anomaly_id: int
    release: str
    deploy_id: int
    status: str
    """``present`` or ``absent``."""
    sessions: int
    """Sessions started on the release since its deploy."""
    affected: int
    rate: float
    same_rate: bool


def follow_up(
    tracked: list[Tracked],
    sig_counts: pd.DataFrame,
    session_counts: pd.DataFrame,
    deploys: pd.DataFrame,
    at: pd.Timestamp,
    *,
    fix_alpha: float = 0.01,
    min_affected: int = 3,
    same_factor: float = 2.0,
) -> list[FollowUp]:
    """The verdict of each later release (first deployed after the anomaly's deploy) that has one."""
    if not tracked or deploys.empty:
        return []
    at_minute = int(minute_index(pd.DatetimeIndex([pd.Timestamp(at)]))[0])
    deploys = deploys.assign(minute=minute_index(deploys["deployed_at"]))
    deploys = deploys[deploys["minute"] <= at_minute].sort_values(["minute", "deploy_id"])
    first = deploys.drop_duplicates(["release", "environment"], keep="first")
    s_minute = minute_index(session_counts["minute"]) if len(session_counts) else np.array([], np.int64)
    minute = minute_index(sig_counts["minute"]) if len(sig_counts) else np.array([], np.int64)
    s_keep, keep = s_minute <= at_minute, minute <= at_minute
    results: list[FollowUp] = []
    for item in tracked:
        origin = int(minute_index(pd.DatetimeIndex([item.deployed_at]))[0])
        later = first[
            (first["environment"].astype(str) == item.environment)
            & (first["minute"] > origin)
            & (first["release"].astype(str) != item.release)
        ]
        for deploy in later.itertuples(index=False):
            release, since = str(deploy.release), int(deploy.minute)
            in_sessions = (
                s_keep
                & (s_minute >= since)
                & (session_counts["release"].astype(str) == release).to_numpy()
                & (session_counts["environment"].astype(str) == item.environment).to_numpy()
            )
            started = int(session_counts["started"].to_numpy()[in_sessions].sum())
            in_counts = (
                keep
                & (minute >= since)
                & (sig_counts["signature_id"].to_numpy() == item.signature_id)
                & (sig_counts["release"].astype(str) == release).to_numpy()
                & (sig_counts["environment"].astype(str) == item.environment).to_numpy()
            )
            affected = int(sig_counts["sessions"].to_numpy()[in_counts].sum())
            rate = affected / started if started else 0.0
            same = item.rate > 0 and 1.0 / same_factor <= rate / item.rate <= same_factor
            if affected == 0 and started * item.rate >= math.log(1.0 / fix_alpha):
                results.append(
                    FollowUp(item.anomaly_id, release, int(deploy.deploy_id), "absent", started, 0, 0.0, False)
                )
            elif affected >= min_affected:
                results.append(
                    FollowUp(item.anomaly_id, release, int(deploy.deploy_id), "present", started, affected, rate, same)
                )
    return results
