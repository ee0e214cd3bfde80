"""What a detection pass reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Finding:
    """One anomaly, identified by ``key`` across passes (store it once per key).

    Counts cover the tested stream from the start of the test (the deploy, or the start of the spike's
    excursion) to ``detected_at``. ``users`` is a lower bound on distinct users (the largest number in
    any one minute); ``sessions_affected`` sums per-minute distinct sessions (exact unless one session
    errs in several minutes).
    """

    kind: str
    """'new_signature', 'regression', 'release_error_rate' or 'spike'."""
    signature_id: int | None
    title: str
    release: str
    environment: str
    deploy_id: int | None
    first_seen: pd.Timestamp | None
    detected_at: pd.Timestamp
    crossed_at: pd.Timestamp
    """Minute in which the statistic first crossed its threshold (with the user/session gates met)."""
    events: int
    users: int
    sessions_affected: int
    rate: float
    """Affected (or errored) sessions per session started in the tested stream."""
    baseline_rate: float
    """The rate the stream was tested against."""
    score: float
    """Largest statistic / threshold; >= 1 for every finding, higher is more anomalous."""
    key: str
    details: dict[str, Any] = field(default_factory=dict, compare=True)
    """Kind-specific facts stored with the anomaly: a spike's excursion (``details["spike"]``), a rise's
    onset when no deploy is to blame (``onset``), the segment a segment test found it in (``segment``,
    ``segment_rate``: ``"Safari 14"``, 0.04)."""
