from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

DEPLOY_AT = pd.Timestamp("2026-11-27 12:00", tz="UTC")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261127)


def frames(rows: list[dict], sessions: list[dict], signatures: list[dict], deploys: list[dict]) -> dict:
    """Hand-made input frames with the detector's exact column names."""
    sig_counts = pd.DataFrame(
        rows, columns=["signature_id", "release", "environment", "minute", "events", "users", "sessions"]
    )
    session_counts = pd.DataFrame(
        sessions, columns=["release", "environment", "minute", "started", "errored", "crashed"]
    )
    for frame in (sig_counts, session_counts):
        frame["minute"] = pd.to_datetime(frame["minute"], utc=True)
    sigs = pd.DataFrame(signatures, columns=["signature_id", "title", "first_seen", "noise_class", "in_app"])
    sigs["first_seen"] = pd.to_datetime(sigs["first_seen"], utc=True)
    deps = pd.DataFrame(deploys, columns=["deploy_id", "release", "environment", "deployed_at"])
    deps["deployed_at"] = pd.to_datetime(deps["deployed_at"], utc=True)
    return {"sig_counts": sig_counts, "session_counts": session_counts, "signatures": sigs, "deploys": deps}
