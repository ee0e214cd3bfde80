"""Seeded synthetic projects in the detector's input format, for tests, benchmarks and notebooks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def diurnal_sessions(minutes: pd.DatetimeIndex, mean_per_minute: float, amplitude: float = 0.6) -> np.ndarray:
    """Expected sessions started per minute: a daily sine wave around ``mean_per_minute`` (peak 14:00 UTC)."""
    hour = minutes.hour.to_numpy() + minutes.minute.to_numpy() / 60.0
    return mean_per_minute * (1.0 + amplitude * np.cos(2 * np.pi * (hour - 14.0) / 24.0))


@dataclass(frozen=True)
class SimSignature:
    """A signature's affected-session rate per release (``rate`` for releases not listed)."""

    signature_id: int
    rate: float
    release_rates: dict[str, float] = field(default_factory=dict)
    title: str = ""
    noise_class: str | None = None
    in_app: bool = True
    first_seen: pd.Timestamp | None = None
    episodes: tuple[tuple[pd.Timestamp, pd.Timestamp, float], ...] = ()
    """``(start, end, rate)``: the rate in every release during ``[start, end)`` (a backend outage)."""

    def rate_for(self, release: str) -> float:
        return self.release_rates.get(release, self.rate)


@dataclass(frozen=True)
class SimDeploy:
    """``release`` takes over ``rollout_minutes`` after ``deployed_at`` (0: all new sessions at once)."""

    deploy_id: int
    release: str
    deployed_at: pd.Timestamp
    rollout_minutes: int = 0
    final_share: float = 1.0


def _release_shares(minutes: pd.DatetimeIndex, initial_release: str, deploys: list[SimDeploy]) -> dict[str, np.ndarray]:
    shares = {initial_release: np.ones(len(minutes))}
    for deploy in sorted(deploys, key=lambda d: d.deployed_at):
        elapsed = (minutes - deploy.deployed_at).total_seconds().to_numpy() / 60.0
        ramp = np.clip((elapsed + 1.0) / max(deploy.rollout_minutes, 1), 0.0, 1.0) * deploy.final_share
        ramp[elapsed < 0] = 0.0
        for release in shares:
            shares[release] = shares[release] * (1.0 - ramp)
        shares[deploy.release] = shares.get(deploy.release, 0.0) + ramp
    return shares


def simulate_project(
    *,
    start: pd.Timestamp,
    end: pd.Timestamp,
    sessions_per_minute: float,
    signatures: list[SimSignature],
    deploys: list[SimDeploy],
    rng: np.random.Generator,
    environment: str = "production",
    initial_release: str = "web@1.0.0",
    diurnal_amplitude: float = 0.6,
) -> dict[str, pd.DataFrame]:
    """Frames ``sig_counts``, ``session_counts``, ``signatures``, ``deploys`` for minutes [start, end).

    Sessions started per minute are Poisson around a diurnal mean; each release gets its share; each
    signature affects Binomial(started, rate) sessions per minute and release (one user per session,
    about 1.5 events per affected session). ``first_seen`` defaults to the signature's first minute.
    """
    minutes = pd.date_range(start, end, freq="min", inclusive="left", tz="UTC")
    expected = diurnal_sessions(minutes, sessions_per_minute, diurnal_amplitude)
    shares = _release_shares(minutes, initial_release, deploys)
    sig_frames, session_frames = [], []
    ids = np.array([s.signature_id for s in signatures], dtype=np.int64)
    for release, share in shares.items():
        started = rng.poisson(expected * share)
        rates = np.repeat(np.array([s.rate_for(release) for s in signatures])[:, None], len(minutes), axis=1)
        for row, sig in enumerate(signatures):
            for begin, finish, rate in sig.episodes:
                rates[row, (minutes >= begin) & (minutes < finish)] = rate
        rates = np.clip(rates, 0.0, 1.0)
        affected = rng.binomial(started[None, :], rates)
        errored = rng.binomial(started, 1.0 - np.prod(1.0 - rates, axis=0))
        sig_idx, minute_idx = np.nonzero(affected)
        sessions = affected[sig_idx, minute_idx]
        sig_frames.append(
            pd.DataFrame(
                {
                    "signature_id": ids[sig_idx],
                    "release": release,
                    "environment": environment,
                    "minute": minutes[minute_idx],
                    "events": sessions + rng.poisson(0.5 * sessions),
                    "users": sessions,
                    "sessions": sessions,
                }
            )
        )
        live = started > 0
        session_frames.append(
            pd.DataFrame(
                {
                    "release": release,
                    "environment": environment,
                    "minute": minutes[live],
                    "started": started[live],
                    "errored": np.minimum(errored[live], started[live]),
                    "crashed": 0,
                }
            )
        )
    sig_counts = pd.concat(sig_frames, ignore_index=True)
    # Categorical names, as a loader should produce them: the detector's grouping is then cheap.
    sig_counts = sig_counts.astype({"release": "category", "environment": "category"})
    seen = sig_counts.groupby("signature_id")["minute"].min()
    first_seen = [s.first_seen or seen.get(s.signature_id, end) for s in signatures]
    return {
        "sig_counts": sig_counts,
        "session_counts": pd.concat(session_frames, ignore_index=True),
        "signatures": pd.DataFrame(
            {
                "signature_id": ids,
                "title": [s.title or f"Error {s.signature_id}" for s in signatures],
                "first_seen": pd.to_datetime(first_seen, utc=True),
                "noise_class": pd.Series([s.noise_class for s in signatures], dtype=object),
                "in_app": [s.in_app for s in signatures],
            }
        ),
        "deploys": pd.DataFrame(
            {
                "deploy_id": [d.deploy_id for d in deploys],
                "release": [d.release for d in deploys],
                "environment": environment,
                "deployed_at": pd.to_datetime([d.deployed_at for d in deploys], utc=True),
            }
        ),
    }
