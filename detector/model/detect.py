"""The detection pass: per-minute counts in, findings out (pure; no database, no HTTP).

Per environment:

* after each deploy of the last ``deploy_watch_minutes``, its release is tested from the deploy minute
  on with mixture e-processes (anytime-valid, alpha-spent over deploys x streams):
  new signatures against a floor rate, known signatures against their pre-deploy rate *and* against
  the releases still running side by side, the release's errored-session share likewise;
* every signature of the environment is watched by a Poisson CUSUM against its own baseline rate; a
  crossing is a spike when no watched deploy's releases explain the rise (onset against adoption).

Only data up to ``at`` is used, so a pass gives the same findings live and in a replay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from detector.model.attribution import Attribution, attribute_rise
from detector.model.config import DetectorConfig
from detector.model.findings import Finding
from detector.model.segment_tests import (
    SegmentCounts,
    SegmentDeploy,
    prepare_segment_counts,
    with_segment_findings,
)
from detector.model.sequential import (
    binomial_glr_bound,
    conditional_log_lr_increments,
    cusum_threshold,
    eprocess_threshold,
    group_starts,
    grouped_cummax,
    grouped_cumsum,
    mixture_log_evidence,
    mixture_log_evidence_from_increments,
    mixture_log_evidence_vs_estimate,
    quasi_poisson_dispersion,
    sparse_poisson_cusum,
)
from detector.model.spikes import DETAILS_KEY, SpikeExcursion

SIG_COUNT_COLUMNS = ("signature_id", "release", "environment", "minute", "events", "users", "sessions")
SESSION_COUNT_COLUMNS = ("release", "environment", "minute", "started", "errored", "crashed")


class DetectorInputError(ValueError):
    """An input frame lacks a required column."""


def minute_index(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Whole minutes since the Unix epoch (UTC; naive timestamps are taken as UTC)."""
    index = pd.DatetimeIndex(values)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.to_numpy().astype("datetime64[m]").astype(np.int64)


def minute_timestamp(minute: int) -> pd.Timestamp:
    """Inverse of :func:`minute_index` for one minute."""
    return pd.Timestamp(int(minute) * 60, unit="s", tz="UTC")


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DetectorInputError(f"{name} lacks columns {missing}")


@dataclass(frozen=True)
class _Prepared:
    """Inputs as flat numpy columns, filtered to minutes <= at and stripped of suppressed noise."""

    at: pd.Timestamp
    at_minute: int
    vocabulary: dict[str, int]
    """Code of every environment and release name; the ``env``/``release`` columns hold codes."""
    sig: np.ndarray
    release: np.ndarray
    env: np.ndarray
    minute: np.ndarray
    events: np.ndarray
    users: np.ndarray
    sessions: np.ndarray
    noisy: np.ndarray
    sig_code: np.ndarray
    """Dense code of each row's signature: its position in ``sig_ids``."""
    sig_ids: np.ndarray
    """The signature ids present in the rows, sorted."""
    s_release: np.ndarray
    s_env: np.ndarray
    s_minute: np.ndarray
    s_started: np.ndarray
    s_errored: np.ndarray
    titles: dict[int, str]
    first_seen: dict[int, pd.Timestamp]
    last_seen_before: dict[int, pd.Timestamp]
    """Latest minute each signature was seen before the supplied counts begin (optional column)."""
    noisy_ids: frozenset[int]
    deploys: pd.DataFrame

    def code(self, name: str) -> int:
        """Code of an environment or release name (-1, matching nothing, if it has no data)."""
        return self.vocabulary.get(str(name), -1)

    def name(self, code: int) -> str:
        return self.names[code]

    @property
    def names(self) -> list[str]:
        return list(self.vocabulary)


def _encode(column: pd.Series, vocabulary: dict[str, int]) -> np.ndarray:
    """Integer codes of a string column in a shared, growing vocabulary (comparisons on codes are fast)."""
    codes, uniques = pd.factorize(column)
    mapping = np.array([vocabulary.setdefault(str(u), len(vocabulary)) for u in uniques] + [-1], dtype=np.int64)
    return mapping[codes]


def _prepare(
    sig_counts: pd.DataFrame,
    session_counts: pd.DataFrame,
    signatures: pd.DataFrame,
    deploys: pd.DataFrame,
    at: pd.Timestamp,
    config: DetectorConfig,
) -> _Prepared:
    _require(sig_counts, SIG_COUNT_COLUMNS, "sig_counts")
    _require(session_counts, SESSION_COUNT_COLUMNS, "session_counts")
    _require(signatures, ("signature_id", "title", "first_seen", "noise_class", "in_app"), "signatures")
    _require(deploys, ("deploy_id", "release", "environment", "deployed_at"), "deploys")
    at = pd.Timestamp(at)
    at = at.tz_localize("UTC") if at.tz is None else at.tz_convert("UTC")
    at_minute = int(minute_index(pd.DatetimeIndex([at]))[0])

    deploys = deploys.assign(deployed_at=pd.to_datetime(deploys["deployed_at"], utc=True))
    deploys = deploys[deploys["deployed_at"] <= at].copy()
    deploys["minute"] = minute_index(deploys["deployed_at"]) if len(deploys) else np.array([], np.int64)
    deploys = deploys.sort_values(["deployed_at", "deploy_id"], kind="stable").reset_index(drop=True)

    noise = signatures["noise_class"].astype(object).where(signatures["noise_class"].notna(), None)
    ids = signatures["signature_id"].to_numpy(np.int64)
    suppressed = frozenset(ids[noise.isin(list(config.suppressed_noise_classes)).to_numpy()].tolist())
    grace = frozenset(ids[noise.isin(list(config.grace_noise_classes)).to_numpy()].tolist())
    noisy_mask = noise.notna().to_numpy() | ~signatures["in_app"].fillna(True).astype(bool).to_numpy()
    noisy_ids = frozenset(ids[noisy_mask].tolist())
    titles = dict(zip(ids.tolist(), signatures["title"].astype(str).tolist(), strict=True))
    first_seen_ts = pd.to_datetime(signatures["first_seen"], utc=True)
    first_seen = {i: t for i, t in zip(ids.tolist(), first_seen_ts, strict=True) if not pd.isna(t)}
    last_seen_before: dict[int, pd.Timestamp] = {}
    if "last_seen_before" in signatures.columns:
        last_ts = pd.to_datetime(signatures["last_seen_before"], utc=True)
        last_seen_before = {i: t for i, t in zip(ids.tolist(), last_ts, strict=True) if not pd.isna(t)}

    minute = minute_index(sig_counts["minute"]) if len(sig_counts) else np.array([], np.int64)
    sig = sig_counts["signature_id"].to_numpy(np.int64)
    keep = minute <= at_minute
    if suppressed:
        keep &= ~np.isin(sig, list(suppressed))
    vocabulary: dict[str, int] = {}
    env = _encode(sig_counts["environment"], vocabulary)
    release = _encode(sig_counts["release"], vocabulary)
    s_env = _encode(session_counts["environment"], vocabulary)
    s_release = _encode(session_counts["release"], vocabulary)
    s_minute = minute_index(session_counts["minute"]) if len(session_counts) else np.array([], np.int64)
    s_keep = s_minute <= at_minute
    s_errored = session_counts["errored"].to_numpy(float)
    # Sessions errored by noise (expected post-deploy noise; with release_errors_exclude_noise, every
    # signature with a noise class or without in-app frames) are not errors of the release.
    not_app = np.zeros(len(sig), dtype=bool)
    if config.release_errors_exclude_noise and noisy_ids:
        not_app = (minute <= at_minute) & np.isin(sig, list(noisy_ids))
    if grace:
        in_grace = _within_grace(minute, env, deploys, config.deploy_grace_minutes, vocabulary)
        expected_noise = keep & in_grace & np.isin(sig, list(grace))
        keep &= ~expected_noise
        not_app |= expected_noise
    if not_app.any():
        s_errored = _without_noise(
            s_errored,
            (s_release, s_env, s_minute),
            (release[not_app], env[not_app], minute[not_app]),
            sig_counts["sessions"].to_numpy(float)[not_app],
        )

    sig_ids, sig_code = _factorize_sorted(sig[keep]) if keep.any() else (np.array([], np.int64), np.array([], np.int64))
    return _Prepared(
        at=at,
        at_minute=at_minute,
        vocabulary=vocabulary,
        sig=sig[keep],
        release=release[keep],
        env=env[keep],
        minute=minute[keep],
        events=sig_counts["events"].to_numpy(float)[keep],
        users=sig_counts["users"].to_numpy(float)[keep],
        sessions=sig_counts["sessions"].to_numpy(float)[keep],
        noisy=np.isin(sig[keep], list(noisy_ids)),
        sig_ids=sig_ids,
        sig_code=sig_code,
        s_release=s_release[s_keep],
        s_env=s_env[s_keep],
        s_minute=s_minute[s_keep],
        s_started=session_counts["started"].to_numpy(float)[s_keep],
        s_errored=s_errored[s_keep],
        titles=titles,
        first_seen=first_seen,
        last_seen_before=last_seen_before,
        noisy_ids=noisy_ids,
        deploys=deploys,
    )


def prepare_counts(
    sig_counts: pd.DataFrame,
    session_counts: pd.DataFrame,
    signatures: pd.DataFrame,
    deploys: pd.DataFrame,
    at: pd.Timestamp,
    config: DetectorConfig | None = None,
) -> _Prepared:
    """The frames as the detector reads them (flat columns, minutes up to ``at``, noise taken out), to be
    shared by :func:`detect_anomalies` and :func:`detector.model.exposure.release_exposures`."""
    return _prepare(sig_counts, session_counts, signatures, deploys, at, config or DetectorConfig())


def _without_noise(
    errored: np.ndarray,
    session_keys: tuple[np.ndarray, np.ndarray, np.ndarray],
    noise_keys: tuple[np.ndarray, np.ndarray, np.ndarray],
    noise_sessions: np.ndarray,
) -> np.ndarray:
    """``errored`` minus the noise sessions of the same (release, environment, minute), at least 0.

    Summing per-signature sessions may count a session hit by two noise signatures twice; the floor at
    0 and the rarity of such sessions keep that harmless (it can only lower the errored count)."""
    if len(noise_sessions) == 0 or len(errored) == 0:
        return errored
    frame = pd.DataFrame({"r": noise_keys[0], "e": noise_keys[1], "m": noise_keys[2], "n": noise_sessions})
    totals = frame.groupby(["r", "e", "m"])["n"].sum()
    index = pd.MultiIndex.from_arrays(list(session_keys))
    noise = totals.reindex(index).fillna(0.0).to_numpy()
    return np.maximum(errored - noise, 0.0)


def _within_grace(
    minute: np.ndarray, env: np.ndarray, deploys: pd.DataFrame, grace_minutes: int, vocabulary: dict[str, int]
) -> np.ndarray:
    """True for rows whose minute lies in [deploy, deploy + grace) of a deploy in the same environment."""
    result = np.zeros(len(minute), dtype=bool)
    for environment, group in deploys.groupby("environment"):
        rows = env == vocabulary.get(str(environment), -1)
        starts = np.sort(group["minute"].to_numpy(np.int64))
        last = np.searchsorted(starts, minute[rows], side="right") - 1
        since = minute[rows] - starts[np.maximum(last, 0)]
        result[rows] = (last >= 0) & (since < grace_minutes)
    return result


def _deploys_per_week(prepared: _Prepared, config: DetectorConfig) -> float:
    if config.deploys_per_week is not None:
        return max(config.deploys_per_week, 1.0)
    lookback = pd.Timedelta(days=config.lookback_days)
    recent = prepared.deploys["deployed_at"] > prepared.at - lookback
    return max(float(recent.sum()) / (config.lookback_days / 7.0), 1.0)


def _per_minute(minutes: np.ndarray, values: np.ndarray, origin: int, length: int) -> np.ndarray:
    return np.bincount(minutes - origin, weights=values, minlength=length)[:length]


def _first_true_per_group(codes: np.ndarray, mask: np.ndarray) -> dict[int, int]:
    """Row index of the first True of ``mask`` for each code (rows sorted by code)."""
    rows = np.flatnonzero(mask)
    unique, first = np.unique(codes[rows], return_index=True)
    return dict(zip(unique.tolist(), rows[first].tolist(), strict=True))


@dataclass(frozen=True)
class _Stream:
    """Per-(signature, minute) rows of one tested stream, sorted by signature then minute."""

    sig: np.ndarray
    minute: np.ndarray
    events: np.ndarray
    users: np.ndarray
    sessions: np.ndarray

    @property
    def start(self) -> np.ndarray:
        return group_starts(self.sig)


def _stream(prepared: _Prepared, mask: np.ndarray) -> _Stream:
    """Rows selected by ``mask`` summed per (signature, minute) across releases, sorted."""
    sig, minute = prepared.sig[mask], prepared.minute[mask]
    if len(sig) == 0:
        empty = np.array([], dtype=float)
        return _Stream(sig.astype(np.int64), minute, empty, empty, empty)
    low = int(minute.min())
    key = (sig - int(sig.min())) * (int(minute.max()) - low + 1) + (minute - low)
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = group_starts(key)
    at = np.flatnonzero(first)

    def total(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values[mask][order], at)

    return _Stream(
        sig=sig[order][at],
        minute=minute[order][at],
        events=total(prepared.events),
        users=total(prepared.users),
        sessions=total(prepared.sessions),
    )


def _sessions_by_sig(prepared: _Prepared, mask: np.ndarray) -> dict[int, float]:
    """Affected sessions summed per signature over the rows of ``mask`` (signatures with rows only)."""
    codes = prepared.sig_code[mask]
    if len(codes) == 0:
        return {}
    totals = np.bincount(codes, weights=prepared.sessions[mask], minlength=len(prepared.sig_ids))
    present = np.bincount(codes, minlength=len(prepared.sig_ids)) > 0
    return dict(zip(prepared.sig_ids[present].tolist(), totals[present].tolist(), strict=True))


def _lookup(totals: dict[int, float], sig: np.ndarray) -> np.ndarray:
    """``totals[s]`` for each row's signature (0 where absent), vectorised."""
    if not totals:
        return np.zeros(len(sig))
    ids = np.fromiter(totals, dtype=np.int64, count=len(totals))
    values = np.fromiter(totals.values(), dtype=float, count=len(totals))
    order = np.argsort(ids)
    ids, values = ids[order], values[order]
    position = np.minimum(np.searchsorted(ids, sig), len(ids) - 1)
    return np.where(ids[position] == sig, values[position], 0.0)


def _factorize_sorted(sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Like ``np.unique(..., return_inverse=True)`` but hash-based (no sort of all rows)."""
    codes, uniques = pd.factorize(sig)
    order = np.argsort(uniques)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return np.asarray(uniques)[order], rank[codes]


def detect_anomalies(
    sig_counts: pd.DataFrame,
    session_counts: pd.DataFrame,
    signatures: pd.DataFrame,
    deploys: pd.DataFrame,
    at: pd.Timestamp,
    config: DetectorConfig | None = None,
    gate_met_at: GateLookup | None = None,
    spike_excursions: Sequence[SpikeExcursion] = (),
    *,
    segment_sessions: pd.DataFrame | None = None,
    segment_sig_counts: pd.DataFrame | None = None,
    prepared: _Prepared | None = None,
) -> list[Finding]:
    """Findings of one detection pass at ``at`` over one project's frames.

    Frames and columns are those of the module's callers' contract: ``sig_counts`` should reach back
    ``lookback_days`` plus ``deploy_watch_minutes`` before ``at`` (less data only shortens baselines;
    a signature absent from the supplied data but with ``first_seen``, or the optional
    ``signatures.last_seen_before`` -- its latest minute before the supplied counts begin -- in a
    deploy's lookback is not called new). Rows after ``at``'s minute are ignored. Findings are sorted by
    ``crossed_at`` then ``key``; each key names one anomaly across passes.

    ``spike_excursions`` are the spike excursions earlier passes reported (open, or ended within the
    data): an open one is continued under its key, or reported ended; see :mod:`detector.model.spikes`.

    With both segment frames (see :mod:`detector.model.segment_tests`), a deploy's signatures are also
    tested in each browser segment; without them the findings are exactly those of the overall tests.

    ``prepared`` is :func:`prepare_counts` of the same frames, ``at`` and ``config``, when the caller has it
    (the pass also measures the deploys' verdicts from it); otherwise it is made here.
    """
    config = config or DetectorConfig()
    if prepared is None:
        prepared = _prepare(sig_counts, session_counts, signatures, deploys, at, config)
    segments = None
    if segment_sessions is not None and segment_sig_counts is not None:
        segments = prepare_segment_counts(segment_sessions, segment_sig_counts, signatures, prepared.at_minute, config)
    per_week = _deploys_per_week(prepared, config)
    window_start = prepared.at - pd.Timedelta(minutes=config.deploy_watch_minutes)
    active = prepared.deploys[prepared.deploys["deployed_at"] > window_start]
    # A release deployed twice in the window is tested once, from its first deploy there.
    active = active.drop_duplicates(["release", "environment"], keep="first")

    findings: list[Finding] = []
    watched: set[tuple[int, str]] = set()
    for deploy in active.itertuples(index=False):
        if prepared.code(str(deploy.release)) < 0:
            continue  # nothing was counted for that release yet: nothing to test
        findings.extend(_deploy_findings(prepared, deploy, per_week, config, watched, gate_met_at, segments))
    # A signature a watched deploy brought (new or dormant) is its deploy's to judge against the floor
    # for the whole watch: below it, an hour later the spike CUSUM (whose baseline then holds the
    # signature's first hour) would report it as a spike with no deploy to blame.
    claimed = {(f.signature_id, f.environment) for f in findings if f.signature_id is not None} | watched
    spikes = _spike_findings(prepared, config, spike_excursions)
    continued = {e.key for e in spike_excursions}
    spikes = [f for f in spikes if (f.signature_id, f.environment) not in claimed or f.key in continued]
    findings.extend(_spikes_no_deploy_explains(prepared, config, active, per_week, spikes, continued))
    return sorted(findings, key=lambda f: (f.crossed_at, f.key))


def _spikes_no_deploy_explains(
    prepared: _Prepared,
    config: DetectorConfig,
    active: pd.DataFrame,
    per_week: float,
    spikes: list[Finding],
    continued: set[str],
) -> list[Finding]:
    """The spikes to report: a new crossing in an environment with watched deploys is one only if onset
    against adoption (:func:`attribute_rise`) says its rise began at some moment for every release alike.
    A rise that follows a watched deploy's releases is that deploy's tests' business, however long after
    the deploy the CUSUM sees it; an outage in the middle of a day of hourly deploys is still a spike."""
    by_env: dict[str, pd.DataFrame] = {}
    contexts: dict[tuple[str, int], _DeployContext] = {}

    def context_at(environment: str, minute: int | None) -> _DeployContext | None:
        """The watched deploy of ``environment`` at ``minute`` (None: its earliest, whose lineage holds
        every later one, each tried as a cause too)."""
        if environment not in by_env:
            by_env[environment] = active[
                (active["environment"].astype(str) == environment)
                & (active["minute"] <= prepared.at_minute)
                & np.array([prepared.code(str(r)) >= 0 for r in active["release"]], dtype=bool)
            ].sort_values("minute")
        watched = by_env[environment]
        if minute is not None:
            watched = watched[watched["minute"] == minute]
        if not len(watched):
            return None
        deploy = next(watched.itertuples(index=False))
        key = (environment, int(deploy.minute))
        if key not in contexts:
            contexts[key] = _deploy_context(prepared, deploy, per_week, config)
        return contexts[key]

    kept = []
    for finding in spikes:
        context = None if finding.key in continued else context_at(finding.environment, None)
        rows = (prepared.env == prepared.code(finding.environment)) & (prepared.sig == finding.signature_id)
        while context is not None:
            attribution = _attribution(context, prepared.sessions, context.lineage, rows=rows)
            if attribution.cause != "later_deploy":
                break
            # A later deploy fits better than the earliest: is that one's rise an onset or its own?
            context = context_at(finding.environment, attribution.later_origin)
        if context is None or attribution.cause == "onset":
            kept.append(finding)
    return kept


def _deploy_findings(
    prepared: _Prepared,
    deploy: object,
    per_week: float,
    config: DetectorConfig,
    watched: set[tuple[int, str]],
    gate_met_at: GateLookup | None = None,
    segments: SegmentCounts | None = None,
) -> list[Finding]:
    """The deploy's findings; adds to ``watched`` the (signature, environment) pairs it tests against the
    new-signature floor.

    The deploy's side is its **lineage**: its release and every release first deployed after it (they
    carry its code unless they fixed it), so a bug a night-time release brought is still its deploy's
    once the next release has replaced it. The other side (older releases, long-lived tabs) is the
    concurrent control, and the releases the deploy replaced, right before it, are the baseline."""
    context = _deploy_context(prepared, deploy, per_week, config, gate_met_at)
    environment, release, origin, lookback = context.environment, context.release, context.origin, context.lookback
    lineage, base_start = context.lineage, context.baseline_start
    in_env = prepared.env == prepared.code(environment)
    in_lineage = np.isin(prepared.release, lineage)
    pre = in_env & (prepared.minute >= origin - lookback) & (prepared.minute < origin)
    post = in_env & (prepared.minute >= origin)
    own_release = prepared.release == prepared.code(release)
    s_env = prepared.s_env == prepared.code(environment)
    s_lineage = np.isin(prepared.s_release, lineage)
    pre_sessions = _sessions_by_sig(prepared, pre)
    base = in_env & ~in_lineage & (prepared.minute >= base_start) & (prepared.minute < origin)
    s_base = s_env & ~s_lineage & (prepared.s_minute >= base_start) & (prepared.s_minute < origin)
    base_sessions = _sessions_by_sig(prepared, base)
    base_exposure = float(prepared.s_started[s_base].sum())

    new_stream = _stream(prepared, post & in_lineage)
    # A new signature is the deploy's only if its own release shows it (a later release's bug is that
    # later deploy's); the lineage's later releases then add their evidence.
    own = frozenset(np.unique(prepared.sig[post & own_release]).tolist())
    if len(new_stream.sig) == 0:
        candidates_new: set[int] = set()
    else:
        lookback_start = minute_timestamp(origin - lookback)
        deploy_minute = minute_timestamp(origin)

        def seen_in_lookback(times: dict[int, pd.Timestamp], s: int) -> bool:
            return s in times and lookback_start <= times[s] < deploy_minute

        candidates_new = {
            s
            for s in own
            if s not in pre_sessions
            and not seen_in_lookback(prepared.first_seen, s)
            and not seen_in_lookback(prepared.last_seen_before, s)
        }
    # Dormant: known (seen in the lookback, by ``first_seen``/``last_seen_before``) but without counts
    # in the supplied data before the deploy. Their rate there is unknown, not zero: a pseudo-event
    # baseline would make any reappearance a regression, so they are held to the new signatures' floor
    # (a meaningful share of sessions) and reported as regressions.
    dormant = own - set(pre_sessions) - candidates_new
    if base_exposure < config.baseline_min_sessions:
        dormant = frozenset()  # nothing ran before the deploy: a known signature's rate there is unknown
    watched.update((s, environment) for s in candidates_new | dormant)
    findings = _new_signature_findings(context, new_stream, candidates_new, dormant)
    if base_exposure >= config.baseline_min_sessions:
        findings += _regression_findings(
            context,
            new_stream,
            _stream(prepared, post & ~in_lineage),
            base_sessions,
            base_exposure,
            set(pre_sessions) - candidates_new,
        )
    if segments is not None:
        findings = with_segment_findings(
            findings,
            segments,
            _segment_deploy(context, candidates_new, dormant, set(pre_sessions) - candidates_new),
            config,
        )
    findings = _attributed(context, findings)
    findings += _release_error_rate_findings(context, s_base)
    return findings


def _deploy_context(
    prepared: _Prepared, deploy: object, per_week: float, config: DetectorConfig, gate_met_at: GateLookup | None = None
) -> _DeployContext:
    """The deploy as its tests see it: its lineage, its sessions and the others' since, its baseline."""
    environment = str(deploy.environment)  # type: ignore[attr-defined]
    release = str(deploy.release)  # type: ignore[attr-defined]
    origin = int(deploy.minute)  # type: ignore[attr-defined]
    length = prepared.at_minute - origin + 1
    lineage = _lineage_codes(prepared, environment, origin, release)
    s_post = (prepared.s_env == prepared.code(environment)) & (prepared.s_minute >= origin)
    s_lineage = np.isin(prepared.s_release, lineage)
    s_new, s_old = s_post & s_lineage, s_post & ~s_lineage
    started_new = _per_minute(prepared.s_minute[s_new], prepared.s_started[s_new], origin, length)
    return _DeployContext(
        prepared=prepared,
        deploy=deploy,
        environment=environment,
        release=release,
        origin=origin,
        lookback=round(config.lookback_days * 24 * 60),
        started_new=started_new,
        started_old=_per_minute(prepared.s_minute[s_old], prepared.s_started[s_old], origin, length),
        cum_new=np.cumsum(started_new),
        per_week=per_week,
        config=config,
        lineage=lineage,
        gate_met_at=gate_met_at,
        baseline_start=_baseline_start(prepared, environment, origin, lineage, config),
    )


def _segment_deploy(context: _DeployContext, new: set[int], dormant: frozenset[int], known: set[int]) -> SegmentDeploy:
    """The deploy as the segment tests see it (the same candidates as the overall tests)."""
    prepared = context.prepared
    deploys = prepared.deploys
    earlier = deploys[
        (deploys["environment"] == context.environment)
        & (deploys["minute"] < context.origin)
        & (deploys["release"].astype(str) != context.release)
    ]
    return SegmentDeploy(
        environment=context.environment,
        release=context.release,
        deploy_id=context.deploy_id,
        origin=context.origin,
        at=prepared.at,
        at_minute=prepared.at_minute,
        lookback=context.lookback,
        per_week=context.per_week,
        new_ids=frozenset(new | dormant),
        dormant_ids=frozenset(dormant),
        known_ids=frozenset(known),
        previous_release=str(earlier["release"].iloc[-1]) if len(earlier) else None,
        release_sessions=float(context.cum_new[-1]) if len(context.cum_new) else 0.0,
        titles=prepared.titles,
        first_seen=prepared.first_seen,
    )


def _lineage_codes(prepared: _Prepared, environment: str, origin: int, release: str) -> np.ndarray:
    """Codes of the deploy's release and of every release first deployed after it in the environment."""
    deploys = prepared.deploys[prepared.deploys["environment"].astype(str) == environment]
    first = deploys.groupby(deploys["release"].astype(str))["minute"].min()
    names = {release, *first[first > origin].index.tolist()}
    return np.array([prepared.code(n) for n in sorted(names)], dtype=np.int64)


def _baseline_start(
    prepared: _Prepared, environment: str, origin: int, lineage: np.ndarray, config: DetectorConfig
) -> int:
    """First minute of the baseline: the releases the deploy replaced, right before it.

    The baseline spans the latest regime before the deploy (since the environment's previous deploy of
    a release outside the lineage), reaching back regime by regime until it holds
    ``baseline_min_sessions`` sessions, and never more than ``baseline_max_minutes``: a bug a previous
    release brought is part of its baseline, so an unchanged rate is never a regression of the next.
    """
    earliest = origin - min(round(config.lookback_days * 24 * 60), config.baseline_max_minutes)
    deploys = prepared.deploys
    earlier = deploys[
        (deploys["environment"].astype(str) == environment)
        & (deploys["minute"] < origin)
        & (deploys["minute"] > earliest)
        & ~np.isin([prepared.code(str(r)) for r in deploys["release"]], lineage)
    ]
    s_old = (
        (prepared.s_env == prepared.code(environment))
        & ~np.isin(prepared.s_release, lineage)
        & (prepared.s_minute < origin)
        & (prepared.s_minute >= earliest)
    )
    minutes, started = prepared.s_minute[s_old], prepared.s_started[s_old]
    for start in sorted(set(earlier["minute"].astype(int).tolist()), reverse=True):
        if started[minutes >= start].sum() >= config.baseline_min_sessions:
            return int(start)
    return int(earliest)


def _superseded_minute(context: _DeployContext) -> int | None:
    """First minute at which releases deployed after the deploy's own release start more sessions than it
    (over the trailing ``SUPERSEDED_SPAN`` minutes): from then on its sessions are a tail (old tabs)."""
    prepared = context.prepared
    later = [c for c in context.lineage.tolist() if c != prepared.code(context.release)]
    if not later:
        return None
    s_post = (prepared.s_env == prepared.code(context.environment)) & (prepared.s_minute >= context.origin)
    length = len(context.started_new)
    own = s_post & (prepared.s_release == prepared.code(context.release))
    successors = s_post & np.isin(prepared.s_release, later)
    own_started = np.cumsum(_per_minute(prepared.s_minute[own], prepared.s_started[own], context.origin, length))
    later_started = np.cumsum(
        _per_minute(prepared.s_minute[successors], prepared.s_started[successors], context.origin, length)
    )

    def trailing(cum: np.ndarray) -> np.ndarray:
        return cum - np.concatenate((np.zeros(SUPERSEDED_SPAN), cum[:-SUPERSEDED_SPAN]))[: len(cum)]

    overtaken = (trailing(later_started) > trailing(own_started)) & (trailing(later_started) > 0)
    return context.origin + int(np.argmax(overtaken)) if overtaken.any() else None


SUPERSEDED_SPAN = 10


@dataclass(frozen=True)
class _DeployContext:
    prepared: _Prepared
    deploy: object
    environment: str
    release: str
    origin: int
    lookback: int
    started_new: np.ndarray
    started_old: np.ndarray
    cum_new: np.ndarray
    per_week: float
    config: DetectorConfig
    lineage: np.ndarray
    """Codes of the releases on the deploy's side (its release and those first deployed after it)."""
    baseline_start: int
    """First minute of the baseline (the replaced releases' sessions from here to the deploy)."""
    gate_met_at: GateLookup | None = None

    @property
    def deploy_id(self) -> int:
        return int(self.deploy.deploy_id)  # type: ignore[attr-defined]

    def noisy_extra(self, sig: np.ndarray) -> np.ndarray:
        noisy = np.isin(sig, list(self.prepared.noisy_ids))
        return np.where(noisy, math.log(self.config.noisy_evidence_factor), 0.0)


GateLookup = Callable[[int, str, list[str], pd.Timestamp, pd.Timestamp], pd.Timestamp | None]
"""``(signature, environment, releases, since, until)`` -> the minute by which that signature had
affected ``min_users`` distinct users and ``min_sessions`` distinct sessions of those releases in the
window (exact, from the stored events), or None if it has not yet."""


def _crossings(
    context: _DeployContext, stream: _Stream, start: np.ndarray, crossed_evidence: np.ndarray
) -> dict[int, int]:
    """First row per signature where the evidence crossed and the gates were met.

    The per-minute gate needs no store; with ``gate_met_at`` the gate is also met once the deploy's window
    holds the distinct users and sessions (a bug hitting one session every few minutes at night adds
    up; one user's loop does not). Only streams that could pass it (enough users and sessions summed
    over minutes, an upper bound of the distinct counts) are looked up."""
    config = context.config
    crossed = _first_true_per_group(stream.sig, crossed_evidence & _gates(stream, start, config))
    if context.gate_met_at is None:
        return crossed
    upper = (grouped_cumsum(stream.users, start) >= config.min_users) & (
        grouped_cumsum(stream.sessions, start) >= config.min_sessions
    )
    releases = [context.prepared.name(int(c)) for c in context.lineage.tolist() if c >= 0]
    since = minute_timestamp(context.origin)
    for sig, row in _first_true_per_group(stream.sig, crossed_evidence & upper).items():
        if sig in crossed and crossed[sig] <= row:
            continue
        met = context.gate_met_at(sig, context.environment, releases, since, context.prepared.at)
        if met is None:
            continue
        rows = np.flatnonzero(
            crossed_evidence & (stream.sig == sig) & (stream.minute >= int(minute_index(pd.DatetimeIndex([met]))[0]))
        )
        if len(rows):
            crossed[sig] = min(crossed.get(sig, int(rows[0])), int(rows[0]))
    return crossed


def _gates(stream: _Stream, start: np.ndarray, config: DetectorConfig) -> np.ndarray:
    """Rows where the stream has by then shown min_users users and min_sessions sessions in a minute.

    Per-minute distinct counts cannot be added without double counting one user's loop, so the largest
    single-minute count is the distinct count we can vouch for.
    """
    users = grouped_cummax(stream.users, start)
    sessions = grouped_cummax(stream.sessions, start)
    return (users >= config.min_users) & (sessions >= config.min_sessions)


def _exposure_through(context: _DeployContext, stream: _Stream, start: np.ndarray) -> np.ndarray:
    """Cumulative sessions started on the new release through each row's minute, at least the stream's
    own cumulative affected sessions (sessions reported late must not inflate the rate)."""
    exposure = context.cum_new[stream.minute - context.origin]
    return np.maximum(exposure, grouped_cumsum(stream.sessions, start))


def _stream_finding(
    context: _DeployContext,
    kind: str,
    stream: _Stream,
    row: int,
    first_row: int,
    last_row: int,
    score: float,
    baseline_rate: float,
    threshold: float,
) -> Finding:
    """``score`` is the stream's best evidence over its ``threshold``; their product, the evidence itself
    (nats), is kept in ``details["evidence"]`` (a deploy's verdict asks more of it than an alert does)."""
    sig = int(stream.sig[row])
    prepared = context.prepared
    sessions = float(stream.sessions[first_row : last_row + 1].sum())
    exposure = max(float(context.cum_new[-1]), sessions)
    return Finding(
        kind=kind,
        signature_id=sig,
        title=prepared.titles.get(sig, ""),
        release=context.release,
        environment=context.environment,
        deploy_id=context.deploy_id,
        first_seen=prepared.first_seen.get(sig, minute_timestamp(int(stream.minute[first_row]))),
        detected_at=prepared.at,
        crossed_at=minute_timestamp(int(stream.minute[row])),
        events=int(stream.events[first_row : last_row + 1].sum()),
        users=int(stream.users[first_row : last_row + 1].max()),
        sessions_affected=int(sessions),
        rate=sessions / exposure if exposure > 0 else float("nan"),
        baseline_rate=float(baseline_rate),
        score=float(score),
        key=f"{kind}:{sig}:{context.deploy_id}",
        details={"evidence": float(score * threshold)},
    )


def _group_bounds(codes: np.ndarray) -> dict[int, tuple[int, int]]:
    start = group_starts(codes)
    firsts = np.flatnonzero(start)
    lasts = np.append(firsts[1:] - 1, len(codes) - 1)
    return {int(codes[f]): (int(f), int(last)) for f, last in zip(firsts, lasts, strict=True)}


def _max_per_group(codes: np.ndarray, values: np.ndarray) -> dict[int, float]:
    if len(codes) == 0:
        return {}
    series = pd.Series(values).groupby(codes).max()
    return dict(zip(series.index.tolist(), series.to_numpy().tolist(), strict=True))


def _mixture_where_possible(
    cum_counts: np.ndarray, cum_expected: np.ndarray, thresholds: np.ndarray, ratios: np.ndarray
) -> np.ndarray:
    """Mixture log-evidence, computed only where it could reach ``thresholds``; -inf elsewhere.

    The mixture never exceeds the best single ratio's log-likelihood ratio, itself at most the
    Poisson GLR ``X log(X / mu) - (X - mu)``; rows below the threshold by that bound are skipped,
    which under the null is nearly all of them.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(
            cum_counts > cum_expected, cum_counts * np.log(cum_counts / cum_expected) - (cum_counts - cum_expected), 0.0
        )
    log_e = np.full(len(cum_counts), -np.inf)
    possible = bound >= thresholds
    if possible.any():
        log_e[possible] = mixture_log_evidence(cum_counts[possible], cum_expected[possible], ratios)
    return log_e


def _mixture_vs_estimate_where_possible(
    cum_counts: np.ndarray,
    cum_exposure: np.ndarray,
    baseline_counts: np.ndarray,
    baseline_exposure: float,
    thresholds: np.ndarray,
    ratios: np.ndarray,
) -> np.ndarray:
    """:func:`mixture_log_evidence_vs_estimate` where its binomial GLR bound reaches ``thresholds``."""
    bound = binomial_glr_bound(cum_counts, cum_exposure, baseline_counts, baseline_exposure)
    log_e = np.full(len(cum_counts), -np.inf)
    possible = bound >= thresholds
    if possible.any():
        log_e[possible] = mixture_log_evidence_vs_estimate(
            cum_counts[possible], cum_exposure[possible], baseline_counts[possible], baseline_exposure, ratios
        )
    return log_e


def _new_signature_findings(
    context: _DeployContext, new_stream: _Stream, candidates: set[int], dormant: frozenset[int] = frozenset()
) -> list[Finding]:
    """New signatures against the floor rate. ``dormant`` ones (known, but without counts in the data
    before the deploy) are tested the same way and reported as regressions."""
    config = context.config
    candidates = candidates | dormant
    if not candidates:
        return []
    mask = np.isin(new_stream.sig, list(candidates))
    stream = _Stream(
        new_stream.sig[mask],
        new_stream.minute[mask],
        new_stream.events[mask],
        new_stream.users[mask],
        new_stream.sessions[mask],
    )
    start = stream.start
    thresholds = _ranked_new_signature_thresholds(context, stream, start) + context.noisy_extra(stream.sig)
    floor = config.new_signature_floor_rate
    log_e = _mixture_where_possible(
        grouped_cumsum(stream.sessions, start),
        floor * _exposure_through(context, stream, start),
        thresholds,
        np.asarray(config.rate_ratios),
    )
    crossed = _crossings(context, stream, start, log_e >= thresholds)
    best = _max_per_group(stream.sig, log_e / thresholds)
    bounds = _group_bounds(stream.sig)
    return [
        _stream_finding(
            context,
            "regression" if sig in dormant else "new_signature",
            stream,
            row,
            *bounds[sig],
            best[sig],
            floor,
            float(thresholds[row]),
        )
        for sig, row in crossed.items()
    ]


def _ranked_new_signature_thresholds(context: _DeployContext, stream: _Stream, start: np.ndarray) -> np.ndarray:
    """Per-row thresholds of a deploy's new signatures: the ``i``-th to appear since the deploy gets the
    share ``1 / (i (i + 1))`` of the deploy's new-signature budget (the shares sum to 1 however many
    appear, so the union bound holds without assuming a count). A bug a release brings is nearly always
    among its first new signatures: the first pays ``log 2`` over one test per deploy where an equal
    split over 20 streams paid ``log 20``, the fourth the same as before, later ones more."""
    first_minute = stream.minute[start]
    sigs = stream.sig[start]
    order = np.lexsort((sigs, first_minute))
    rank = np.empty(len(sigs), dtype=np.float64)
    rank[order] = np.arange(1, len(sigs) + 1)
    budget = context.config.budget("new_signature")
    by_sig = {
        int(sig): eprocess_threshold(alarms_per_week=budget, tests_per_week=context.per_week * r * (r + 1.0))
        for sig, r in zip(sigs.tolist(), rank.tolist(), strict=True)
    }
    return np.array([by_sig[int(sig)] for sig in stream.sig.tolist()], dtype=np.float64)


def _regression_findings(
    context: _DeployContext,
    new_stream: _Stream,
    old_stream: _Stream,
    pre_sessions: dict[int, float],
    pre_exposure: float,
    known_ids: set[int],
) -> list[Finding]:
    config = context.config
    known = np.array(sorted(known_ids), dtype=np.int64)
    mask = np.isin(new_stream.sig, known)
    if not mask.any():
        return []
    stream = _Stream(
        new_stream.sig[mask],
        new_stream.minute[mask],
        new_stream.events[mask],
        new_stream.users[mask],
        new_stream.sessions[mask],
    )
    start = stream.start
    ratios = np.asarray(config.rate_ratios)
    tests = context.per_week * max(len(known), 1)
    threshold = eprocess_threshold(alarms_per_week=config.budget("regression"), tests_per_week=tests)
    thresholds = threshold + context.noisy_extra(stream.sig)
    baseline = {s: (pre_sessions.get(s, 0.0) + 1.0) / pre_exposure for s in known.tolist()}
    # The baseline rate is an estimate (a rare signature's from a handful of sessions): test against it
    # as such, not as if it were the true rate.
    log_e = _mixture_vs_estimate_where_possible(
        grouped_cumsum(stream.sessions, start),
        _exposure_through(context, stream, start),
        _lookup(pre_sessions, stream.sig) + 1.0,
        pre_exposure,
        thresholds,
        ratios,
    )
    crossed = _crossings(context, stream, start, log_e >= thresholds)
    if crossed:
        vetoed = _control_vetoes(context, stream, old_stream, baseline, set(crossed))
        crossed = {s: row for s, row in crossed.items() if s not in vetoed}
    best = _max_per_group(stream.sig, log_e / thresholds)
    bounds = _group_bounds(stream.sig)
    return [
        _stream_finding(
            context, "regression", stream, row, *bounds[sig], best[sig], baseline[sig], float(thresholds[row])
        )
        for sig, row in crossed.items()
    ]


def _control_vetoes(
    context: _DeployContext,
    stream: _Stream,
    old_stream: _Stream,
    baseline: dict[int, float],
    sigs: set[int],
) -> set[int]:
    """The signatures whose rise the older releases running side by side share: conditional on each
    minute's affected sessions, "the lineage runs the others' rate" beats "it runs ``k`` times it" (``k``
    the lineage's rate over its baseline) by ``log(onset_evidence_factor)``. Conditioning cancels what
    hits all releases alike (time of day, a backend outage, a browser update). Where the others are too
    few to tell (a full rollout, old tabs only) nothing is vetoed: the baseline test and the onset test
    decide, where the confirmation once asked of them held a rare signature's regression for 17 hours."""
    wanted = np.array(sorted(sigs), dtype=np.int64)
    new_mask, old_mask = np.isin(stream.sig, wanted), np.isin(old_stream.sig, wanted)
    if not old_mask.any():
        return set()
    both = (
        pd.concat(
            [
                pd.DataFrame(
                    {"sig": stream.sig[new_mask], "minute": stream.minute[new_mask], "new": stream.sessions[new_mask]}
                ).assign(old=0.0),
                pd.DataFrame(
                    {"sig": old_stream.sig[old_mask], "minute": old_stream.minute[old_mask], "new": 0.0}
                ).assign(old=old_stream.sessions[old_mask]),
            ]
        )
        .groupby(["sig", "minute"], sort=True)
        .sum()
    )
    sig = both.index.get_level_values(0).to_numpy(np.int64)
    offset = both.index.get_level_values(1).to_numpy(np.int64) - context.origin
    new, old = both["new"].to_numpy(), both["old"].to_numpy()
    started_new = np.maximum(context.started_new[offset], new)
    started_old = np.maximum(context.started_old[offset], old)
    share = started_new / np.maximum(started_new + started_old, 1.0)
    exposure = max(float(context.cum_new[-1]), 1.0)
    new_rate = _sum_per_group(stream.sig[new_mask], stream.sessions[new_mask])
    floor = min(context.config.rate_ratios)
    ratio = np.array([max(new_rate.get(int(s), 0.0) / exposure / baseline[int(s)], floor) for s in sig])
    pi = np.clip(share, 0.0, 1.0)
    # log LR of "same rate" over "k times", per row: minus the control test's increment at k.
    same_over_worse = (new + old) * np.log(ratio * pi + 1.0 - pi) - new * np.log(ratio)
    totals = _sum_per_group(sig, same_over_worse)
    margin = math.log(context.config.onset_evidence_factor)
    return {s for s, value in totals.items() if value >= margin}


def _sum_per_group(codes: np.ndarray, values: np.ndarray) -> dict[int, float]:
    if len(codes) == 0:
        return {}
    series = pd.Series(values).groupby(codes).sum()
    return dict(zip(series.index.tolist(), series.to_numpy().tolist(), strict=True))


def _release_error_rate_findings(context: _DeployContext, s_base: np.ndarray) -> list[Finding]:
    """The release's errored share against the replaced releases' right before the deploy (and against
    the concurrent releases), while the release is current: a superseded release's tail (old tabs) is a
    different audience and is not tested."""
    config = context.config
    prepared = context.prepared
    baseline_started = float(prepared.s_started[s_base].sum())
    if baseline_started < config.baseline_min_sessions:
        return []
    baseline_errored = float(prepared.s_errored[s_base].sum()) + 1.0
    superseded = _superseded_minute(context)
    length = len(context.started_new) if superseded is None else max(superseded - context.origin, 0)
    if length == 0:
        return []
    s_post = (prepared.s_env == prepared.code(context.environment)) & (prepared.s_minute >= context.origin)
    is_new = prepared.s_release == prepared.code(context.release)

    def per_minute(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
        return _per_minute(prepared.s_minute[mask], values[mask], context.origin, length)

    started_new = per_minute(s_post & is_new, prepared.s_started)
    started_old = per_minute(s_post & ~is_new, prepared.s_started)
    errored_new = per_minute(s_post & is_new, prepared.s_errored)
    errored_old = per_minute(s_post & ~is_new, prepared.s_errored)
    cum_errored = np.cumsum(errored_new)
    exposure = np.maximum(np.cumsum(started_new), cum_errored)
    ratios = np.asarray(config.release_rate_ratios)
    threshold = eprocess_threshold(alarms_per_week=config.budget("release_error_rate"), tests_per_week=context.per_week)
    log_e = mixture_log_evidence_vs_estimate(cum_errored, exposure, baseline_errored, baseline_started, ratios)
    alarm = (log_e >= threshold) & (cum_errored >= config.min_sessions)
    if not alarm.any():
        return []
    row = int(np.argmax(alarm))
    old_total = float(started_old.sum())
    total = old_total + float(started_new.sum())
    if old_total >= config.control_min_sessions and total > 0 and old_total / total >= config.control_min_share:
        share = np.maximum(started_new, errored_new) / np.maximum(
            np.maximum(started_new, errored_new) + np.maximum(started_old, errored_old), 1.0
        )
        increments = conditional_log_lr_increments(errored_new, errored_old, share, ratios)
        control = mixture_log_evidence_from_increments(increments, group_starts(np.zeros(length, np.int64)))
        if not (control >= threshold).any():
            return []
        row = max(row, int(np.argmax(control >= threshold)))
    own = np.array([prepared.code(context.release)], dtype=np.int64)
    if _attribution(context, prepared.s_errored, own).cause != "deploy":
        return []  # a rise that began for every release alike is an outage's, not this release's
    total_errored = float(cum_errored[-1])
    return [
        Finding(
            kind="release_error_rate",
            signature_id=None,
            title=f"Errored sessions up in {context.release}",
            release=context.release,
            environment=context.environment,
            deploy_id=context.deploy_id,
            first_seen=None,
            detected_at=prepared.at,
            crossed_at=minute_timestamp(context.origin + row),
            events=int(total_errored),
            users=0,
            sessions_affected=int(total_errored),
            rate=total_errored / float(exposure[-1]) if exposure[-1] > 0 else float("nan"),
            baseline_rate=baseline_errored / baseline_started,
            score=float(log_e.max() / threshold) if threshold > 0 else math.inf,
            key=f"release_error_rate:{context.environment}:{context.deploy_id}",
            details={"evidence": float(log_e.max())},
        )
    ]


ONSET_CONTEXT_MINUTES = 60
"""The onset test sees at least this much of the environment's history before the deploy."""


def _attribution(
    context: _DeployContext, values: np.ndarray, lineage: np.ndarray, rows: np.ndarray | None = None
) -> Attribution:
    """:func:`attribute_rise` for one stream of the environment: ``values`` per session-count row
    (errored sessions), or, with ``rows``, a signature's affected sessions at those count rows."""
    prepared, config = context.prepared, context.config
    first = min(context.baseline_start, context.origin - ONSET_CONTEXT_MINUTES)
    length = prepared.at_minute - first + 1
    s_rows = (prepared.s_env == prepared.code(context.environment)) & (prepared.s_minute >= first)
    releases, s_code = np.unique(prepared.s_release[s_rows], return_inverse=True)
    exposure = np.zeros((len(releases), length))
    np.add.at(exposure, (s_code, prepared.s_minute[s_rows] - first), prepared.s_started[s_rows])
    counts = np.zeros_like(exposure)
    if rows is None:
        np.add.at(counts, (s_code, prepared.s_minute[s_rows] - first), values[s_rows])
    else:
        rows = rows & (prepared.minute >= first)
        position = np.searchsorted(releases, prepared.release[rows])
        known = (position < len(releases)) & (
            releases[np.minimum(position, len(releases) - 1)] == prepared.release[rows]
        )
        np.add.at(counts, (position[known], prepared.minute[rows][known] - first), prepared.sessions[rows][known])
    deploys = prepared.deploys[prepared.deploys["environment"].astype(str) == context.environment]
    first_deploy = deploys.groupby(deploys["release"].astype(str))["minute"].min()
    first_by_code = {prepared.code(str(name)): int(m) for name, m in first_deploy.items()}
    later = sorted(
        {
            first_by_code[c]
            for c in lineage.tolist()
            if c in first_by_code and context.origin < first_by_code[c] <= prepared.at_minute
        }
    )
    origins = [context.origin, *later]
    lineages = [np.isin(releases, lineage)]
    lineages += [np.array([first_by_code.get(int(c), -1) >= o for c in releases]) for o in later]
    return attribute_rise(counts, exposure, first, origins, lineages, math.log(config.onset_evidence_factor))


def _attributed(context: _DeployContext, findings: list[Finding]) -> list[Finding]:
    """Signature findings whose rise the deploy explains; a later deploy's rise is left to that deploy,
    and a rise that began at some moment for every release alike becomes a spike with its onset."""
    prepared = context.prepared
    kept: list[Finding] = []
    in_env = prepared.env == prepared.code(context.environment)
    for finding in findings:
        attribution = _attribution(
            context, prepared.sessions, context.lineage, rows=in_env & (prepared.sig == finding.signature_id)
        )
        if attribution.cause == "deploy":
            kept.append(finding)
        elif attribution.cause == "onset":
            onset = minute_timestamp(attribution.onset_minute)
            kept.append(
                replace(
                    finding,
                    kind="spike",
                    deploy_id=None,
                    first_seen=onset,
                    key=f"spike:{finding.signature_id}:{finding.environment}:onset-after-deploy-{context.deploy_id}",
                    details={
                        **finding.details,
                        "onset": onset.isoformat(),
                        "tested_deploy_id": context.deploy_id,
                        "onset_evidence": round(-attribution.evidence, 1),
                    },
                )
            )
    return kept


def _data_step_minutes(prepared: _Prepared) -> int:
    """The data's resolution in minutes: the usual gap between minutes with session counts (1 for the
    worker's per-minute counts; 60 for hourly series). A CUSUM only moves at those minutes."""
    minutes = np.unique(prepared.s_minute)
    if len(minutes) < 3:
        return 1
    return max(1, int(np.median(np.diff(minutes))))


def _spike_findings(
    prepared: _Prepared, config: DetectorConfig, excursions: Sequence[SpikeExcursion] = ()
) -> list[Finding]:
    lookback = round(config.lookback_days * 24 * 60)
    findings: list[Finding] = []
    # An open excursion goes on against its own frozen baseline, whatever the window or deploys.
    for excursion in excursions:
        if excursion.running:
            finding = _continued_spike(prepared, config, excursion)
            if finding is not None:
                findings.append(finding)
    origins: dict[str, int] = {}
    for code in pd.unique(prepared.env).tolist():
        environment = prepared.name(code)
        origins[environment] = prepared.at_minute - config.spike_window_minutes + 1
    n_streams = 0
    plans = []
    for environment, origin in origins.items():
        in_env = prepared.env == prepared.code(environment)
        pre = in_env & (prepared.minute >= origin - lookback) & (prepared.minute < origin)
        window = in_env & (prepared.minute >= origin)
        n_streams += len(pd.unique(prepared.sig[in_env & (prepared.minute >= origin - lookback)]))
        plans.append((environment, origin, pre, window))
    if n_streams == 0:
        return findings
    step = config.spike_step_minutes or _data_step_minutes(prepared)
    threshold = cusum_threshold(alarms_per_week=config.budget("spike"), n_streams=n_streams, step_minutes=step)
    for environment, origin, pre, window in plans:
        known = [e for e in excursions if e.environment == environment]
        findings.extend(
            _spike_findings_in_env(prepared, config, environment, origin, pre, window, threshold, known, step)
        )
    return findings


def _spike_findings_in_env(
    prepared: _Prepared,
    config: DetectorConfig,
    environment: str,
    origin: int,
    pre: np.ndarray,
    window: np.ndarray,
    threshold: float,
    excursions: Sequence[SpikeExcursion] = (),
    step: int = 1,
) -> list[Finding]:
    lookback = round(config.lookback_days * 24 * 60)
    s_env = prepared.s_env == prepared.code(environment)
    s_pre = s_env & (prepared.s_minute >= origin - lookback) & (prepared.s_minute < origin)
    pre_exposure = float(prepared.s_started[s_pre].sum())
    # Streams with an open excursion are continued elsewhere; after an ended one a stream restarts at its
    # end, with the excursion left out of its baseline and dispersion.
    running = {e.signature_id for e in excursions if e.running}
    ended: dict[int, tuple[int, int]] = {}
    for e in excursions:
        if not e.running and e.signature_id not in running:
            span = (_minute(e.began), _minute(e.ended_at))
            if e.signature_id not in ended or span[1] > ended[e.signature_id][1]:
                ended[e.signature_id] = span
    window = window & ~np.isin(prepared.sig, list(running))
    restart = np.full(len(prepared.sig), origin, dtype=np.int64)
    for sig, (_began, end) in ended.items():
        restart[prepared.sig == sig] = max(origin, end)
    window &= prepared.minute >= restart
    if pre_exposure < config.baseline_min_sessions or not window.any():
        return []
    length = prepared.at_minute - origin + 1
    s_win = s_env & (prepared.s_minute >= origin)
    cum = np.cumsum(_per_minute(prepared.s_minute[s_win], prepared.s_started[s_win], origin, length))
    cum_before = np.concatenate(([0.0], cum))

    stream = _stream(prepared, window)
    start = stream.start
    pre_sessions = _sessions_by_sig(prepared, pre)
    pre_by_row = _lookup(pre_sessions, stream.sig)
    pre_exposure_by_row = np.full(len(stream.sig), pre_exposure)
    base = np.zeros(len(stream.sig))
    excluded_steps: dict[int, np.ndarray] = {}
    pre_start = origin - lookback
    for sig, (began, end) in ended.items():
        rows = stream.sig == sig
        if not rows.any():
            continue
        in_span = pre & (prepared.sig == sig) & (prepared.minute >= began) & (prepared.minute < end)
        s_span = s_pre & (prepared.s_minute >= began) & (prepared.s_minute < end)
        pre_by_row[rows] -= float(prepared.sessions[in_span].sum())
        pre_exposure_by_row[rows] -= float(prepared.s_started[s_span].sum())
        base[rows] = cum_before[min(max(end, origin), prepared.at_minute + 1) - origin]
        code = int(np.searchsorted(prepared.sig_ids, sig))
        excluded_steps[code] = np.arange(
            (max(began, pre_start) - pre_start) // step, (max(end, pre_start) - pre_start + step - 1) // step
        )
    if config.spike_dispersion:
        phi_by_code = _dispersion_by_code(prepared, pre, s_pre, pre_start, lookback, step, excluded_steps)
    else:
        phi_by_code = np.ones(len(prepared.sig_ids))
    phi = phi_by_code[np.searchsorted(prepared.sig_ids, stream.sig)] if len(stream.sig) else np.ones(0)
    usable = pre_exposure_by_row >= config.baseline_min_sessions
    # Quasi-Poisson: counts in units of phi are Poisson-like, so the CUSUM and the baseline's
    # confidence bound see phi times fewer, more variable counts.
    rate0 = _upper_rate(
        (np.maximum(pre_by_row, 0.0) + 1.0) / phi, np.maximum(pre_exposure_by_row, 1.0) / phi, config.spike_baseline_z
    )
    offset = stream.minute - origin
    cum_sessions = grouped_cumsum(stream.sessions, start)
    # Exposure is never less than the affected sessions themselves (late session data).
    exposure_through = np.maximum(cum[offset] - base, cum_sessions)
    exposure_before = np.minimum(cum_before[offset] - base, exposure_through)
    # One CUSUM per ratio; any of them crossing is an alarm, so each pays log(number of ratios) (union bound).
    ratios = (config.spike_rate_ratio, *config.spike_steep_ratios)
    noisy = np.isin(stream.sig, list(prepared.noisy_ids))
    thresholds = threshold + math.log(len(ratios)) + np.where(noisy, math.log(config.noisy_evidence_factor), 0.0)
    start_rows = np.flatnonzero(start)
    last_rows = np.append(start_rows[1:] - 1, len(start) - 1)
    group = np.cumsum(start) - 1
    chosen: dict[int, tuple[int, np.ndarray]] = {}
    best: dict[int, float] = {}
    for ratio in ratios:
        cusum = sparse_poisson_cusum(
            stream.sessions / phi, rate0 * exposure_before / phi, rate0 * exposure_through / phi, start, ratio
        )
        excursion = np.cumsum(cusum.excursion_start)
        gates = (grouped_cummax(stream.users, cusum.excursion_start) >= config.min_users) & (
            grouped_cummax(stream.sessions, cusum.excursion_start) >= config.min_sessions
        )
        # Only the stream's last excursion can still be running at ``at``: is it above 0 at ``at``?
        llr_end = (
            cum_sessions[last_rows] * math.log(ratio)
            - (ratio - 1.0) * rate0[last_rows] * np.maximum(cum[-1] - base[last_rows], cum_sessions[last_rows])
        ) / phi[last_rows]
        running_now = llr_end - np.minimum(cusum.running_min[last_rows], llr_end) > 0
        current = (excursion == excursion[last_rows][group]) & running_now[group]
        hits = _first_true_per_group(stream.sig, current & (cusum.statistic >= thresholds) & gates & usable)
        for sig, value in _max_per_group(stream.sig[current], cusum.statistic[current] / thresholds[current]).items():
            best[sig] = max(best.get(sig, 0.0), value)
        for sig, hit in hits.items():
            if sig not in chosen or hit < chosen[sig][0]:  # the earliest crossing, and its excursion's rows
                chosen[sig] = (hit, np.flatnonzero(current & (stream.sig == sig)))
    findings = []
    for sig, (hit, rows) in chosen.items():
        finding = _spike_finding(prepared, environment, stream, rows, hit, best[sig], float(rate0[hit]), cum, origin)
        state = SpikeExcursion(
            key=finding.key,
            signature_id=sig,
            environment=environment,
            began=minute_timestamp(int(stream.minute[rows[0]])),
            crossed_at=finding.crossed_at,
            baseline_rate=float(rate0[hit]),
            dispersion=float(phi[hit]),
            threshold=float(thresholds[hit]),
        )
        findings.append(replace(finding, details={DETAILS_KEY: state.as_details()}))
    return findings


def _minute(value: pd.Timestamp | None) -> int:
    return int(minute_index(pd.DatetimeIndex([value]))[0])


def _dispersion_by_code(
    prepared: _Prepared,
    pre: np.ndarray,
    s_pre: np.ndarray,
    pre_start: int,
    lookback: int,
    step: int,
    excluded: dict[int, np.ndarray],
) -> np.ndarray:
    """Each signature's overdispersion ``phi`` (by code) from its baseline rows (see
    :func:`detector.model.sequential.quasi_poisson_dispersion`), steps of ``step`` minutes."""
    n_steps = max(1, -(-lookback // step))
    step_exposure = np.bincount(
        (prepared.s_minute[s_pre] - pre_start) // step, weights=prepared.s_started[s_pre], minlength=n_steps
    )[:n_steps]
    return quasi_poisson_dispersion(
        prepared.sig_code[pre],
        (prepared.minute[pre] - pre_start) // step,
        prepared.sessions[pre],
        step_exposure,
        len(prepared.sig_ids),
        excluded=excluded,
    )


def _continued_spike(prepared: _Prepared, config: DetectorConfig, excursion: SpikeExcursion) -> Finding | None:
    """The open ``excursion`` at ``at``: still running (updated counts), or ended (``ended_at`` set).

    Its CUSUM goes on from its first minute against its frozen baseline and dispersion. It has ended
    once the cumulative log-likelihood ratio has fallen ``threshold`` below its peak: the mirror-image
    CUSUM of "back at the baseline" against "still ``spike_rate_ratio`` times it" crossed (a false end
    while the rate is still raised is as rare as a false alarm). It ended at the minute after the peak.
    """
    began = _minute(excursion.began)
    length = prepared.at_minute - began + 1
    if length <= 0:
        return None
    environment, sig = excursion.environment, excursion.signature_id
    s_env = (prepared.s_env == prepared.code(environment)) & (prepared.s_minute >= began)
    cum = np.cumsum(_per_minute(prepared.s_minute[s_env], prepared.s_started[s_env], began, length))
    if len(cum) == 0 or cum[-1] <= 0:
        return None  # nothing known about the environment since: nothing to say
    cum_before = np.concatenate(([0.0], cum))
    rows_mask = (prepared.sig == sig) & (prepared.env == prepared.code(environment)) & (prepared.minute >= began)
    stream = _stream(prepared, rows_mask)
    ratio, phi, rate = config.spike_rate_ratio, excursion.dispersion, excursion.baseline_rate
    log_k = math.log(ratio)
    offset = stream.minute - began
    cum_sessions = np.cumsum(stream.sessions)
    exposure_through = np.maximum(cum[offset], cum_sessions)
    exposure_before = np.minimum(cum_before[offset], exposure_through)
    llr_through = (cum_sessions * log_k - (ratio - 1.0) * rate * exposure_through) / phi
    llr_before = ((cum_sessions - stream.sessions) * log_k - (ratio - 1.0) * rate * exposure_before) / phi
    total = float(cum_sessions[-1]) if len(cum_sessions) else 0.0
    llr_at = (total * log_k - (ratio - 1.0) * rate * max(float(cum[-1]), total)) / phi
    peak = np.maximum.accumulate(np.concatenate(([0.0], llr_through)))
    # The LLR falls between rows, so its troughs are just before each row and at ``at``.
    drawdown = np.append(peak[:-1] - llr_before, peak[-1] - llr_at)
    fallen = np.flatnonzero(drawdown >= excursion.threshold)
    end_row = int(fallen[0]) if len(fallen) else None
    last = len(stream.sig) if end_row is None else end_row
    if last > 0:
        peak_row = int(np.argmax(llr_through[:last]))
        if llr_through[peak_row] <= 0:
            peak_row = -1
    else:
        peak_row = -1
    through = last if end_row is None else peak_row + 1
    rows = np.arange(through)
    statistic = llr_through - np.minimum(np.minimum.accumulate(np.minimum(llr_before, 0.0)), llr_through)
    score = float(statistic[:last].max() / excursion.threshold) if last > 0 else 0.0
    ended_at = None
    if end_row is not None:
        ended_at = minute_timestamp(int(stream.minute[peak_row]) + 1) if peak_row >= 0 else excursion.began
    state = replace(excursion, ended_at=ended_at)
    if len(rows):
        finding = _spike_finding(prepared, environment, stream, rows, int(rows[0]), score, rate, cum, began)
        end_offset = (int(stream.minute[rows[-1]]) - began) if ended_at is not None else length - 1
        exposure = float(cum[end_offset])
        sessions = float(stream.sessions[rows].sum())
        return replace(
            finding,
            key=excursion.key,
            crossed_at=excursion.crossed_at,
            rate=sessions / max(exposure, sessions, 1.0),
            details={DETAILS_KEY: state.as_details()},
        )
    if ended_at is None:
        return None
    return Finding(
        kind="spike",
        signature_id=sig,
        title=prepared.titles.get(sig, ""),
        release="",
        environment=environment,
        deploy_id=None,
        first_seen=excursion.began,
        detected_at=prepared.at,
        crossed_at=excursion.crossed_at,
        events=0,
        users=0,
        sessions_affected=0,
        rate=0.0,
        baseline_rate=rate,
        score=score,
        key=excursion.key,
        details={DETAILS_KEY: state.as_details()},
    )


def _upper_rate(events: np.ndarray, exposure: float | np.ndarray, z: float) -> np.ndarray:
    """Upper confidence bound (Wilson-type score interval for a Poisson count) of ``events / exposure``."""
    return (events + z * z / 2.0 + z * np.sqrt(events + z * z / 4.0)) / exposure


def _spike_finding(
    prepared: _Prepared,
    environment: str,
    stream: _Stream,
    rows: np.ndarray,
    hit: int,
    score: float,
    baseline_rate: float,
    cum: np.ndarray,
    origin: int,
) -> Finding:
    sig = int(stream.sig[hit])
    begin = int(stream.minute[rows[0]])
    sessions = float(stream.sessions[rows].sum())
    exposure = float(cum[-1] - (cum[begin - origin - 1] if begin > origin else 0.0))
    in_excursion = (prepared.sig == sig) & (prepared.env == prepared.code(environment)) & (prepared.minute >= begin)
    by_release = pd.Series(prepared.sessions[in_excursion]).groupby(prepared.release[in_excursion]).sum()
    crossed_at = minute_timestamp(int(stream.minute[hit]))
    return Finding(
        kind="spike",
        signature_id=sig,
        title=prepared.titles.get(sig, ""),
        release=prepared.name(int(by_release.idxmax())),
        environment=environment,
        deploy_id=None,
        first_seen=prepared.first_seen.get(sig, minute_timestamp(begin)),
        detected_at=prepared.at,
        crossed_at=crossed_at,
        events=int(stream.events[rows].sum()),
        users=int(stream.users[rows].max()),
        sessions_affected=int(sessions),
        rate=sessions / max(exposure, sessions, 1.0),
        baseline_rate=baseline_rate,
        score=score,
        key=f"spike:{sig}:{environment}:{crossed_at.strftime('%Y-%m-%dT%H:%MZ')}",
    )
