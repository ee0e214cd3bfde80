"""What each recent deploy's release ran into: the inputs of its verdict (pure; see `model.verdict`).

The counts are the detector's own (`detect._prepare`: minutes up to `at`, noise taken out of the errored
sessions as the release error-rate test does) and so is the baseline (`detect._baseline_start`: the
releases the deploy replaced, right before it), so the verdict and the anomalies judge the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from detector.model.config import DetectorConfig
from detector.model.detect import (
    _baseline_start,
    _lineage_codes,
    _per_minute,
    _prepare,
    _Prepared,
    minute_timestamp,
)
from detector.model.verdict import NewSignature, ReleaseExposure


def release_exposures(
    sig_counts: pd.DataFrame,
    session_counts: pd.DataFrame,
    signatures: pd.DataFrame,
    deploys: pd.DataFrame,
    at: pd.Timestamp,
    *,
    watch_minutes: int,
    config: DetectorConfig | None = None,
    prepared: _Prepared | None = None,
) -> list[ReleaseExposure]:
    """One `ReleaseExposure` per deploy of the detector's watch (``deploy_watch_minutes`` before `at`):
    the deploy's own release in its environment, from the deploy minute for at most `watch_minutes`.
    ``prepared``: `detect.prepare_counts` of the same frames, when the pass has it already."""
    config = config or DetectorConfig()
    if prepared is None:
        prepared = _prepare(sig_counts, session_counts, signatures, deploys, at, config)
    window_start = prepared.at - pd.Timedelta(minutes=config.deploy_watch_minutes)
    exposures: list[ReleaseExposure] = []
    for deploy in prepared.deploys[prepared.deploys["deployed_at"] > window_start].itertuples(index=False):
        environment, release, origin = str(deploy.environment), str(deploy.release), int(deploy.minute)
        length = max(min(prepared.at_minute - origin + 1, watch_minutes), 0)
        env, own = prepared.code(environment), prepared.code(release)
        s_own = (prepared.s_env == env) & (prepared.s_release == own) & (prepared.s_minute >= origin)
        started = _per_minute(prepared.s_minute[s_own], prepared.s_started[s_own], origin, length)
        errored = _per_minute(prepared.s_minute[s_own], prepared.s_errored[s_own], origin, length)
        lineage = _lineage_codes(prepared, environment, origin, release)
        base_start = _baseline_start(prepared, environment, origin, lineage, config)
        s_base = (
            (prepared.s_env == env)
            & ~np.isin(prepared.s_release, lineage)
            & (prepared.s_minute >= base_start)
            & (prepared.s_minute < origin)
        )
        exposures.append(
            ReleaseExposure(
                deploy_id=int(deploy.deploy_id),
                release=release,
                environment=environment,
                deployed_at=pd.Timestamp(deploy.deployed_at).to_pydatetime(),
                measured_at=prepared.at.to_pydatetime(),
                started=tuple(float(v) for v in started),
                errored=tuple(float(v) for v in errored),
                baseline_started=float(prepared.s_started[s_base].sum()),
                baseline_errored=float(prepared.s_errored[s_base].sum()),
                new_signatures=_new_signatures(prepared, env, own, origin, origin + length),
            )
        )
    return exposures


def _new_signatures(p: _Prepared, env: int, own: int, origin: int, end: int) -> tuple[NewSignature, ...]:
    """App signatures (no noise class, in-app frames) first seen at or after the deploy minute, counted on
    the release in [origin, end), with their summed affected sessions."""
    rows = (p.env == env) & (p.release == own) & (p.minute >= origin) & (p.minute < end) & ~p.noisy
    if not rows.any():
        return ()
    deployed = minute_timestamp(origin)
    totals = pd.Series(p.sessions[rows]).groupby(p.sig[rows]).sum()
    found = []
    for sig, sessions in totals.items():
        first = p.first_seen.get(int(sig))
        if first is not None and first >= deployed:
            found.append(NewSignature(int(sig), p.titles.get(int(sig), ""), float(sessions)))
    return tuple(sorted(found, key=lambda s: -s.sessions))
