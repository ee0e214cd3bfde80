"""A detection pass, end to end: load the counts a pass at `at` may see, run the statistical detectors
(pure, `detector.model`), and record what they found: anomalies with segments and suspect commits, and
the alerts to send. Run by the worker on a schedule and right after each deploy, and on demand.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.blame.model import ErrorContext, SuspectRanking
from detector.blame.rank import rank_suspects
from detector.blame.snapshot import GitSnapshot
from detector.model import DetectorConfig, Finding, detect_anomalies, segments_over_represented
from detector.model.detect import GateLookup, prepare_counts
from detector.model.exposure import release_exposures
from detector.model.follow import Tracked, follow_up
from detector.model.sequential import MINUTES_PER_WEEK
from detector.model.spikes import DETAILS_KEY, SpikeExcursion
from detector.sources.git_repo import CommitInfo, FileChange, GitError, GitRepo
from detector.store.anomalies import (
    SIGNATURE_DEPLOY_KINDS,
    continue_anomaly,
    open_deploy_anomaly_for,
    record_follow_up,
    running_spike_for,
    spike_covering,
    tracked_deploy_anomalies,
    upsert_anomaly,
)
from detector.store.db import transaction
from detector.store.gates import window_gate_met_at
from detector.store.models import (
    Anomaly,
    Commit,
    CommitFile,
    Deploy,
    DeployCommit,
    Event,
    Project,
    SessionMinute,
    Signature,
    SignatureMinute,
)
from detector.store.segments import (
    SEGMENT_SESSION_COLUMNS,
    SEGMENT_SIGNATURE_COLUMNS,
    segment_session_rows,
    signature_segment_rows,
)
from detector.verdicts import VerdictChange, policy_for, record_verdicts

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
"""How far back a pass loads minute counts (baselines and rollouts live within it)."""

PREVIOUS_DEPLOYS_FOR_REGRESSIONS = 3
SEGMENT_COLUMNS = ("route", "browser", "os")


@dataclass(frozen=True)
class AnomalyChange:
    anomaly_id: int
    change: str  # created, grew, ended (a spike back to its rate), updated, followed (a later release's verdict)
    kind: str


def floor_minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _frame(rows: list[Any], columns: list[str], categorical: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns:
        if column in ("minute", "first_seen", "last_seen_before", "deployed_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        elif column in categorical:
            # Few distinct names in many rows: the model groups category codes without hashing strings.
            frame[column] = frame[column].astype("category")
    return frame


def load_frames(
    session: Session,
    *,
    project_id: int,
    at: datetime,
    lookback: timedelta,
    watch: timedelta = WINDOW,
    baseline: timedelta = timedelta(hours=6),
) -> dict[str, pd.DataFrame]:
    """The frames `detect_anomalies` takes, holding only what was known at `at`.

    Minute counts cover the last 24 h (`WINDOW`), and reach back `baseline` before the oldest deploy
    still watched (`watch`), so a deploy's baseline is the same at the last pass of its watch as at the
    first (a baseline that aged out of the loaded window made regressions out of nothing). Before that,
    only each active signature's latest minute within `lookback` is loaded
    (`signatures.last_seen_before`), so a signature seen days before a deploy, but not in the window,
    is not called new; loading the lookback's minutes themselves would multiply a pass's rows by ~15.

    The segment frames (`segment_sessions`, `segment_sig_counts`: see `detector.model.segment_tests`)
    cover the same window; the second holds only the signatures counted on a deployed release after its
    deploy, read exactly from the stored events."""
    deploy_rows = session.execute(
        select(Deploy.id, Deploy.release, Deploy.environment, Deploy.deployed_at).where(
            Deploy.project_id == project_id, Deploy.deployed_at <= at
        )
    ).all()
    deploys = _frame(list(deploy_rows), ["deploy_id", "release", "environment", "deployed_at"])
    start = floor_minute(at - WINDOW)
    watched = deploys["deployed_at"][deploys["deployed_at"] > pd.Timestamp(at - watch)] if len(deploys) else []
    if len(watched):
        start = min(start, floor_minute(watched.min().to_pydatetime() - baseline))
    end = floor_minute(at)
    sig_rows = session.execute(
        select(
            SignatureMinute.signature_id,
            SignatureMinute.release,
            SignatureMinute.environment,
            SignatureMinute.minute,
            SignatureMinute.events,
            SignatureMinute.users,
            SignatureMinute.sessions,
        ).where(
            SignatureMinute.project_id == project_id,
            SignatureMinute.minute >= start,
            SignatureMinute.minute <= end,
        )
    ).all()
    sig_counts = _frame(
        list(sig_rows),
        ["signature_id", "release", "environment", "minute", "events", "users", "sessions"],
        categorical=("release", "environment"),
    )
    session_rows = session.execute(
        select(
            SessionMinute.release,
            SessionMinute.environment,
            SessionMinute.minute,
            SessionMinute.started,
            SessionMinute.errored,
            SessionMinute.crashed,
        ).where(SessionMinute.project_id == project_id, SessionMinute.minute >= start, SessionMinute.minute <= end)
    ).all()
    session_counts = _frame(
        list(session_rows),
        ["release", "environment", "minute", "started", "errored", "crashed"],
        categorical=("release", "environment"),
    )

    active = sorted({int(s) for s in sig_counts["signature_id"].unique()}) if len(sig_counts) else []
    signatures = _signature_frame(session, project_id=project_id, ids=active, window_start=start, lookback=lookback)
    # Segment counts of the signatures a deploy of the window may be blamed for (seen on its release
    # after it): the events of those only are read, so a pass costs what its candidates cost.
    candidates, environments = _deploy_candidates(sig_counts, deploys, start)
    segment_sessions = _frame(
        segment_session_rows(session, project_id=project_id, start=start, end=end),
        list(SEGMENT_SESSION_COLUMNS),
        categorical=("release", "environment", "segment"),
    )
    segment_sig_counts = _frame(
        signature_segment_rows(
            session, project_id=project_id, signature_ids=candidates, environments=environments, start=start, end=end
        ),
        list(SEGMENT_SIGNATURE_COLUMNS),
        categorical=("release", "environment", "segment"),
    )
    return {
        "sig_counts": sig_counts,
        "session_counts": session_counts,
        "signatures": signatures,
        "deploys": deploys,
        "segment_sessions": segment_sessions,
        "segment_sig_counts": segment_sig_counts,
    }


def _deploy_candidates(sig_counts: pd.DataFrame, deploys: pd.DataFrame, start: datetime) -> tuple[list[int], list[str]]:
    """Signatures counted on a release deployed since `start`, at or after its deploy's minute, and the
    environments of those deploys."""
    recent = deploys[deploys["deployed_at"] >= pd.Timestamp(start)] if len(deploys) else deploys
    if not len(recent) or not len(sig_counts):
        return [], []
    first = recent.groupby(["release", "environment"], as_index=False)["deployed_at"].min()
    counts = sig_counts[["signature_id", "release", "environment", "minute"]].astype(
        {"release": str, "environment": str}
    )
    joined = counts.merge(first.astype({"release": str, "environment": str}), on=["release", "environment"])
    after = joined[joined["minute"] >= joined["deployed_at"].dt.floor("min")]
    return sorted(int(s) for s in after["signature_id"].unique()), sorted(first["environment"].astype(str).unique())


def _signature_frame(
    session: Session, *, project_id: int, ids: list[int], window_start: datetime, lookback: timedelta
) -> pd.DataFrame:
    """Active signatures; `first_seen` is their first minute in the window unless they were seen within
    `lookback` before it (a signature silent for longer than the lookback counts as new again), and
    `last_seen_before` their latest minute in the `lookback` before the window (missing if none)."""
    columns = ["signature_id", "title", "first_seen", "noise_class", "in_app", "last_seen_before"]
    if not ids:
        return _frame([], columns)
    rows = []
    seen_before: dict[int, datetime] = {}
    first_in_window: dict[int, datetime] = {}
    for chunk_start in range(0, len(ids), 900):
        chunk = ids[chunk_start : chunk_start + 900]
        seen_before.update(
            session.execute(
                select(SignatureMinute.signature_id, func.max(SignatureMinute.minute))
                .where(
                    SignatureMinute.signature_id.in_(chunk),
                    SignatureMinute.minute < window_start,
                    SignatureMinute.minute >= window_start - lookback,
                )
                .group_by(SignatureMinute.signature_id)
            ).all()
        )
        first_in_window.update(
            session.execute(
                select(SignatureMinute.signature_id, func.min(SignatureMinute.minute))
                .where(SignatureMinute.signature_id.in_(chunk), SignatureMinute.minute >= window_start)
                .group_by(SignatureMinute.signature_id)
            ).all()
        )
        for sig in session.scalars(select(Signature).where(Signature.id.in_(chunk))):
            if sig.id in seen_before or sig.first_seen >= window_start:
                first = sig.first_seen
            else:  # seen long ago, silent through the lookback, back in the window: new again
                first = first_in_window.get(sig.id, sig.first_seen)
            rows.append((sig.id, sig.title, first, sig.noise_class, sig.in_app, seen_before.get(sig.id)))
    return _frame(rows, columns)


def gate_lookup(session: Session, project_id: int, config: DetectorConfig) -> GateLookup:
    """The model's window gate, answered from the stored events of `project_id`."""

    def met_at(
        signature_id: int, environment: str, releases: list[str], since: pd.Timestamp, until: pd.Timestamp
    ) -> pd.Timestamp | None:
        met = window_gate_met_at(
            session,
            project_id=project_id,
            signature_id=signature_id,
            environment=environment,
            releases=releases,
            since=since.to_pydatetime(),
            until=until.to_pydatetime(),
            min_users=config.min_users,
            min_sessions=config.min_sessions,
        )
        return None if met is None else pd.Timestamp(met)

    return met_at


def _segments(session: Session, anomaly: Finding, project_id: int) -> list[dict[str, Any]]:
    if anomaly.signature_id is None:
        return []
    since = anomaly.first_seen - timedelta(minutes=1)
    base = select(Event.route, Event.browser, Event.os).where(
        Event.project_id == project_id,
        Event.release == anomaly.release,
        Event.environment == anomaly.environment,
        Event.timestamp >= since,
    )
    affected = pd.DataFrame(
        session.execute(base.where(Event.signature_id == anomaly.signature_id).limit(5000)).all(),
        columns=list(SEGMENT_COLUMNS),
    )
    population = pd.DataFrame(session.execute(base.limit(20000)).all(), columns=list(SEGMENT_COLUMNS))
    if affected.empty:
        return []
    return segments_over_represented(affected, population, columns=SEGMENT_COLUMNS)


def _set_exact_counts(session: Session, anomaly: Anomaly, at: datetime) -> None:
    """Distinct users and sessions over the anomaly's whole span (the model sees per-minute counts only,
    whose distinct values cannot be summed), from the stored events up to `at`."""
    if anomaly.signature_id is None:
        return
    events, users, sessions = session.execute(
        select(
            func.count(),
            func.count(func.distinct(func.coalesce(Event.user_key, Event.session_key, Event.event_id))),
            func.count(func.distinct(func.coalesce(Event.session_key, Event.user_key, Event.event_id))),
        ).where(
            Event.signature_id == anomaly.signature_id,
            Event.release == anomaly.release,
            Event.environment == anomaly.environment,
            Event.minute >= floor_minute(anomaly.first_seen),
            Event.timestamp <= at,
        )
    ).one()
    if events:
        anomaly.events, anomaly.users, anomaly.sessions_affected = int(events), int(users), int(sessions)


def _commit_infos(session: Session, deploy_ids: list[int]) -> list[CommitInfo]:
    """The commits those deploys brought, oldest first, with their changed files and diffs."""
    rows = session.execute(
        select(Commit, DeployCommit.deploy_id, DeployCommit.position)
        .join(DeployCommit, DeployCommit.commit_id == Commit.id)
        .where(DeployCommit.deploy_id.in_(deploy_ids))
        .order_by(DeployCommit.deploy_id, DeployCommit.position)
    ).all()
    commits: list[CommitInfo] = []
    seen: set[str] = set()
    for commit, _deploy_id, _position in rows:
        if commit.sha in seen:
            continue
        seen.add(commit.sha)
        files = [
            FileChange(
                path=f.path,
                change_type=f.change_type,
                old_path=f.old_path,
                additions=f.additions or 0,
                deletions=f.deletions or 0,
                patch=f.patch or "",
            )
            for f in session.scalars(select(CommitFile).where(CommitFile.commit_id == commit.id))
        ]
        commits.append(
            CommitInfo(
                sha=commit.sha,
                message=commit.message,
                author_name=commit.author_name,
                author_email=commit.author_email,
                timestamp=commit.timestamp or datetime.now(UTC),
                parents=(),
                files=files,
            )
        )
    return commits


BREAK_HISTORY = 200
"""How many earlier anomalies of a project tell which files often break."""


def break_counts(session: Session, project_id: int, before_anomaly_id: int) -> dict[str, int]:
    """How often each file was changed by the top suspect of an earlier anomaly of the project (the
    "files that often break" prior); acknowledged and resolved anomalies count, muted ones do not."""
    top_shas = [
        suspects[0]["sha"]
        for suspects in session.scalars(
            select(Anomaly.suspects)
            .where(
                Anomaly.project_id == project_id,
                Anomaly.id < before_anomaly_id,
                Anomaly.state != "muted",
            )
            .order_by(Anomaly.id.desc())
            .limit(BREAK_HISTORY)
        )
        if suspects
    ]
    blamed = Counter(top_shas)
    counts: Counter[str] = Counter()
    if not blamed:
        return {}
    for sha, path in session.execute(
        select(Commit.sha, CommitFile.path)
        .join(Commit, Commit.id == CommitFile.commit_id)
        .where(Commit.project_id == project_id, Commit.sha.in_(list(blamed)))
    ):
        counts[path] += blamed[sha]
    return dict(counts)


def suspects_for(session: Session, project: Project, anomaly: Anomaly) -> SuspectRanking | None:
    """Rank the commits of the anomaly's deploy (and, for a regression, of the few deploys before)."""
    if anomaly.deploy_id is None:
        return None
    deploy = session.get(Deploy, anomaly.deploy_id)
    if deploy is None:
        return None
    deploy_ids = [deploy.id]
    if anomaly.kind == "regression":
        deploy_ids += list(
            session.scalars(
                select(Deploy.id)
                .where(
                    Deploy.project_id == project.id,
                    Deploy.environment == deploy.environment,
                    Deploy.deployed_at < deploy.deployed_at,
                )
                .order_by(Deploy.deployed_at.desc())
                .limit(PREVIOUS_DEPLOYS_FOR_REGRESSIONS)
            )
        )
    commits = _commit_infos(session, list(reversed(deploy_ids)))
    if not commits:
        return SuspectRanking(suspects=[], unavailable=["commits (the deploy carried none)"])
    error = ErrorContext(type="", value="", title=anomaly.title, frames=[])
    if anomaly.signature_id is not None:
        sample = session.scalar(
            select(Event.data)
            .where(Event.signature_id == anomaly.signature_id, Event.release == anomaly.release)
            .order_by(Event.timestamp.desc())
            .limit(1)
        )
        if sample:
            error = ErrorContext(
                type=sample.get("exception_type") or "",
                value=sample.get("exception_value") or sample.get("message") or "",
                title=anomaly.title,
                frames=list(sample.get("frames") or []),
            )
    snapshot = None
    if project.repo_path and deploy.sha:
        try:
            snapshot = GitSnapshot.at(GitRepo(project.repo_path), deploy.sha)
        except GitError as exc:
            log.warning("cannot read %s at %s: %s", project.repo_path, deploy.sha, exc)
    return rank_suspects(error, commits, snapshot, break_counts=break_counts(session, project.id, anomaly.id))


def run_detection(
    factory: sessionmaker[Session],
    *,
    project_id: int,
    at: datetime | None = None,
    config: DetectorConfig | None = None,
    record_alerts: Callable[[Session, list[AnomalyChange]], object] | None = None,
    record_verdict_changes: Callable[[Session, list[VerdictChange]], object] | None = None,
) -> list[AnomalyChange]:
    """One pass for one project at `at` (default now); returns the anomalies it created or changed.

    `record_alerts(session, changes)` runs in the transaction that stores the anomalies, so an alert
    is queued exactly when its anomaly is recorded (see `detector.notify.enqueue_alerts`); likewise
    `record_verdict_changes(session, changes)` with the deploys whose verdict the pass changed (each
    recent deploy's verdict is judged after the anomalies are stored, see `detector.verdicts`).
    """
    at = at or datetime.now(UTC)
    config = config or DetectorConfig()
    with factory() as session:
        frames = load_frames(
            session,
            project_id=project_id,
            at=at,
            lookback=timedelta(days=config.lookback_days),
            watch=timedelta(minutes=config.deploy_watch_minutes),
            baseline=timedelta(minutes=config.baseline_max_minutes),
        )
        excursions = spike_excursions(session, project_id=project_id, at=at)
        # one reading of the counts for the anomalies and for the deploys' verdicts
        prepared = prepare_counts(
            frames["sig_counts"], frames["session_counts"], frames["signatures"], frames["deploys"], pd.Timestamp(at),
            config,
        )  # fmt: skip
        findings = detect_anomalies(
            **frames,
            at=pd.Timestamp(at),
            config=config,
            gate_met_at=gate_lookup(session, project_id, config),
            spike_excursions=excursions,
            prepared=prepared,
        )
        project_row = session.get(Project, project_id)
        assert project_row is not None
        exposures = release_exposures(
            frames["sig_counts"],
            frames["session_counts"],
            frames["signatures"],
            frames["deploys"],
            pd.Timestamp(at),
            watch_minutes=policy_for(project_row).watch_minutes,
            config=config,
            prepared=prepared,
        )
    changes: list[AnomalyChange] = []
    # Signature findings first: a release-level rise of a deploy that also has one is that anomaly's.
    findings = sorted(findings, key=lambda f: f.kind == "release_error_rate")
    with transaction(factory) as session:
        project = session.get(Project, project_id)
        assert project is not None
        for finding in findings:
            values = _anomaly_values(finding)
            explained = _signature_anomaly_of_deploy(session, project_id, finding)
            if explained is not None:
                _note_release_error_rate(explained, finding)
                changes.append(AnomalyChange(explained.id, "updated", explained.kind))
                continue
            earlier = _continued_anomaly(session, project_id, finding)
            if earlier is not None:
                continue_anomaly(
                    earlier,
                    release=finding.release,
                    deploy_id=finding.deploy_id,
                    sessions=int(finding.sessions_affected),
                    rate=float(finding.rate),
                    seen_at=pd.Timestamp(finding.detected_at).to_pydatetime(),
                )
                changes.append(AnomalyChange(earlier.id, "updated", earlier.kind))
                continue
            anomaly, change = upsert_anomaly(session, project_id=project_id, values=values)
            if change in ("created", "grew"):
                anomaly.segments = _segments(session, finding, project_id)
                _set_exact_counts(session, anomaly, at)
            if change == "created":
                ranking = suspects_for(session, project, anomaly)
                if ranking is not None:
                    anomaly.suspects = [asdict(s) for s in ranking.suspects[:10]]
                    anomaly.evidence_unavailable = list(ranking.unavailable)
            changes.append(AnomalyChange(anomaly.id, change, anomaly.kind))
        changes += _follow_open_anomalies(session, project_id, frames, at, config)
        if record_alerts is not None and changes:
            record_alerts(session, changes)
        session.flush()  # the verdicts read the anomalies just stored
        verdict_changes = record_verdicts(session, project, exposures, at)
        if record_verdict_changes is not None and verdict_changes:
            record_verdict_changes(session, verdict_changes)
    return changes


def _signature_anomaly_of_deploy(session: Session, project_id: int, finding: Finding) -> Anomaly | None:
    """For a release-level finding, the deploy's signature anomaly that already says what broke (one
    incident, one anomaly); None when there is none, or the release-level anomaly exists already."""
    if finding.kind != "release_error_rate" or finding.deploy_id is None:
        return None
    if session.scalar(select(Anomaly.id).where(Anomaly.project_id == project_id, Anomaly.key == finding.key)):
        return None
    return session.scalar(
        select(Anomaly)
        .where(
            Anomaly.project_id == project_id,
            Anomaly.deploy_id == finding.deploy_id,
            Anomaly.kind.in_(SIGNATURE_DEPLOY_KINDS),
        )
        .order_by(Anomaly.id)
        .limit(1)
    )


def _note_release_error_rate(anomaly: Anomaly, finding: Finding) -> None:
    details = dict(anomaly.details or {})
    details["release_error_rate"] = {
        "rate": float(finding.rate),
        "baseline_rate": float(finding.baseline_rate),
        "errored_sessions": int(finding.sessions_affected),
    }
    anomaly.details = details


SPIKE_CONTINUES_WITHIN = timedelta(hours=1)
"""A spike finding continues a spike anomaly of its signature that a pass saw this recently."""
SPIKE_JOINS_DEPLOY_ANOMALY_WITHIN = timedelta(hours=24)
"""A spike of a signature whose deploy anomaly (a bug a release brought, still open) was detected this
recently is that bug seen again (its spike baseline still holds the hours before it), not a new alert;
an older open one no longer silences the signature."""


def _continued_anomaly(session: Session, project_id: int, finding: Finding) -> Anomaly | None:
    """The earlier open anomaly a finding continues (None: record it as is): a later deploy's signature
    finding continues the anomaly of the deploy that brought the signature, and a spike (an outage
    seen after two deploys, or first by a deploy test and then by the CUSUM) the running spike of
    its signature, the spike whose excursion holds its onset, or its recent open deploy anomaly."""
    if finding.signature_id is None:
        return None
    if finding.kind not in SIGNATURE_DEPLOY_KINDS and finding.kind != "spike":
        return None
    if session.scalar(select(Anomaly.id).where(Anomaly.project_id == project_id, Anomaly.key == finding.key)):
        return None
    if finding.kind == "spike":
        return (
            running_spike_for(
                session,
                project_id=project_id,
                signature_id=finding.signature_id,
                environment=finding.environment,
                seen_since=pd.Timestamp(finding.detected_at).to_pydatetime() - SPIKE_CONTINUES_WITHIN,
            )
            or spike_covering(
                session,
                project_id=project_id,
                signature_id=finding.signature_id,
                environment=finding.environment,
                began=_spike_began(finding),
            )
            or open_deploy_anomaly_for(
                session,
                project_id=project_id,
                signature_id=finding.signature_id,
                environment=finding.environment,
                excluding_key=finding.key,
                detected_since=pd.Timestamp(finding.detected_at).to_pydatetime() - SPIKE_JOINS_DEPLOY_ANOMALY_WITHIN,
            )
        )
    return open_deploy_anomaly_for(
        session,
        project_id=project_id,
        signature_id=finding.signature_id,
        environment=finding.environment,
        excluding_key=finding.key,
    )


def _spike_began(finding: Finding) -> datetime:
    """When a spike finding's rise began: the onset a deploy test estimated, else its excursion's start."""
    details = finding.details or {}
    stamp = pd.Timestamp(details.get("onset") or (details.get(DETAILS_KEY) or {}).get("began") or finding.first_seen)
    return (stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")).to_pydatetime()


def _follow_open_anomalies(
    session: Session, project_id: int, frames: dict[str, pd.DataFrame], at: datetime, config: DetectorConfig
) -> list[AnomalyChange]:
    """What each later release says of the open signature anomalies: still there, or gone (a likely fix)."""
    tracked = {
        anomaly.id: (anomaly, deploy)
        for anomaly, deploy in tracked_deploy_anomalies(
            session, project_id=project_id, deployed_after=at - timedelta(days=config.lookback_days)
        )
    }
    items = [
        Tracked(a.id, int(a.signature_id), a.environment, a.release, pd.Timestamp(d.deployed_at), float(a.rate or 0.0))
        for a, d in tracked.values()
        if a.signature_id is not None
    ]
    changes: list[AnomalyChange] = []
    for item in follow_up(items, frames["sig_counts"], frames["session_counts"], frames["deploys"], pd.Timestamp(at)):
        anomaly = tracked[item.anomaly_id][0]
        if record_follow_up(
            anomaly,
            release=item.release,
            deploy_id=item.deploy_id,
            status=item.status,
            sessions=item.sessions,
            affected=item.affected,
            rate=item.rate,
            same_rate=item.same_rate,
        ):
            changes.append(AnomalyChange(anomaly.id, "followed", anomaly.kind))
    return changes


def spike_excursions(session: Session, *, project_id: int, at: datetime) -> list[SpikeExcursion]:
    """The spike excursions the pass at `at` continues or keeps out of its baselines: every spike anomaly
    of the project still running, and those that ended within the loaded `WINDOW`.

    A spike anomaly stored before excursions were tracked (no `details["spike"]`) and detected within
    the window is continued from its `first_seen` against its `baseline_rate` (dispersion 1): it keeps its
    key instead of the pass opening a second anomaly for the same excursion."""
    since = at - WINDOW
    excursions: list[SpikeExcursion] = []
    rows = session.execute(
        select(
            Anomaly.key,
            Anomaly.signature_id,
            Anomaly.environment,
            Anomaly.details,
            Anomaly.first_seen,
            Anomaly.crossed_at,
            Anomaly.detected_at,
            Anomaly.baseline_rate,
        )
        .where(
            Anomaly.project_id == project_id,
            Anomaly.kind == "spike",
            Anomaly.signature_id.is_not(None),
            Anomaly.detected_at <= at,
        )
        .order_by(Anomaly.id)
    ).all()
    for key, signature_id, environment, details, first_seen, crossed_at, detected_at, baseline in rows:
        state = (details or {}).get(DETAILS_KEY)
        if state is not None:
            excursion = SpikeExcursion.from_details(
                key=key, signature_id=signature_id, environment=environment, details=state
            )
        elif detected_at >= since and baseline:
            threshold = math.log(MINUTES_PER_WEEK)  # not stored: a false end once a stream-week
            excursion = SpikeExcursion(
                key=key,
                signature_id=signature_id,
                environment=environment,
                began=pd.Timestamp(first_seen),
                crossed_at=pd.Timestamp(crossed_at or detected_at),
                baseline_rate=float(baseline),
                dispersion=1.0,
                threshold=threshold,
            )
        else:
            continue
        if excursion.running or excursion.ended_at > pd.Timestamp(since):
            excursions.append(excursion)
    # One running excursion per stream: the latest (older rows of the same stream, e.g. several legacy
    # anomalies of one long rise, are left as they are).
    latest = {(e.signature_id, e.environment): e.key for e in excursions if e.running}
    return [e for e in excursions if not e.running or latest[(e.signature_id, e.environment)] == e.key]


def _anomaly_values(finding: Finding) -> dict[str, Any]:
    def ts(value: Any) -> datetime | None:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return None
        return pd.Timestamp(value).to_pydatetime()

    return {
        "key": finding.key,
        "kind": finding.kind,
        "signature_id": finding.signature_id,
        "title": finding.title[:512],
        "release": finding.release,
        "environment": finding.environment,
        "deploy_id": finding.deploy_id,
        "first_seen": ts(finding.first_seen) or ts(finding.crossed_at) or ts(finding.detected_at),
        "detected_at": ts(finding.detected_at),
        "crossed_at": ts(finding.crossed_at),
        "events": int(finding.events),
        "users": int(finding.users),
        "sessions_affected": int(finding.sessions_affected),
        "rate": None if finding.rate is None else float(finding.rate),
        "baseline_rate": None if finding.baseline_rate is None else float(finding.baseline_rate),
        "score": float(finding.score),
        "details": {
            **(finding.details or {}),
            # When a pass last saw it, in the passes' time (a replay's past, or now).
            **({"seen_at": ts(finding.detected_at).isoformat()} if finding.kind == "spike" else {}),
        },
    }
