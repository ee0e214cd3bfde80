"""The state of spike excursions carried from one detection pass to the next.

A spike anomaly is one excursion of a stream's rate above its baseline, however long it lasts and
however often passes run. The pass that first crosses the threshold freezes what the excursion is
measured against (its first minute, the baseline rate, the stream's dispersion) and later passes get
it back (from the stored anomaly's ``details``): they continue the same excursion against the same
baseline instead of starting a new CUSUM whose baseline would by then hold the excursion itself, and
they say when it ended. Pure values; the store keeps them in ``Anomaly.details["spike"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

DETAILS_KEY = "spike"


@dataclass(frozen=True)
class SpikeExcursion:
    """One spike excursion of a (signature, environment) stream, open or ended."""

    key: str
    """The anomaly's key (``spike:{signature}:{environment}:{crossed_at}``), kept while it lasts."""
    signature_id: int
    environment: str
    began: pd.Timestamp
    """First minute of the excursion (the CUSUM's last restart before the crossing)."""
    crossed_at: pd.Timestamp
    baseline_rate: float
    """Rate per session it is tested against (frozen at the crossing)."""
    dispersion: float
    """The stream's overdispersion ``phi`` (>= 1) at the crossing."""
    threshold: float
    """The CUSUM threshold (nats) it crossed; the end test uses the same."""
    ended_at: pd.Timestamp | None = None
    """First minute back at the usual rate, once the pass that saw the end has run."""

    def as_details(self) -> dict[str, Any]:
        """JSON-ready form, for ``Finding.details[DETAILS_KEY]``."""
        return {
            "began": _iso(self.began),
            "crossed_at": _iso(self.crossed_at),
            "baseline_rate": float(self.baseline_rate),
            "dispersion": float(self.dispersion),
            "threshold": float(self.threshold),
            "ended_at": None if self.ended_at is None else _iso(self.ended_at),
        }

    @classmethod
    def from_details(
        cls, *, key: str, signature_id: int, environment: str, details: Mapping[str, Any]
    ) -> SpikeExcursion:
        """Inverse of :meth:`as_details` (``details`` is ``Finding.details[DETAILS_KEY]``)."""
        ended = details.get("ended_at")
        return cls(
            key=key,
            signature_id=int(signature_id),
            environment=str(environment),
            began=_timestamp(details["began"]),
            crossed_at=_timestamp(details["crossed_at"]),
            baseline_rate=float(details["baseline_rate"]),
            dispersion=float(details.get("dispersion", 1.0)),
            threshold=float(details["threshold"]),
            ended_at=None if ended is None else _timestamp(ended),
        )

    @property
    def running(self) -> bool:
        return self.ended_at is None


def excursions_after(previous: Mapping[str, SpikeExcursion], findings: list[Any]) -> dict[str, SpikeExcursion]:
    """The excursion state after a pass: ``previous`` updated by the pass's spike findings (by key).

    What the store does by keeping ``details`` per anomaly key, for callers without a store (benchmarks,
    notebooks)."""
    state = dict(previous)
    for finding in findings:
        details = getattr(finding, "details", None) or {}
        if finding.kind == "spike" and DETAILS_KEY in details:
            state[finding.key] = SpikeExcursion.from_details(
                key=finding.key,
                signature_id=int(finding.signature_id),
                environment=finding.environment,
                details=details[DETAILS_KEY],
            )
    return state


def _iso(value: pd.Timestamp) -> str:
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _timestamp(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
