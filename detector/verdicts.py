"""Deploy verdicts between the store and the pure model: judged by each detection pass (and kept with the
counts judged), judged again on request under the project's settings or a caller's overrides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from detector.model.verdict import (
    AnomalySummary,
    NewSignature,
    ReleaseExposure,
    Verdict,
    VerdictPolicy,
    VerdictStatus,
    deploy_verdict,
)
from detector.store.models import Anomaly, Deploy, Project
from detector.store.verdicts import failing_anomalies, save_verdict, verdict_row


@dataclass(frozen=True)
class VerdictChange:
    """A deploy whose verdict a pass changed."""

    deploy_id: int
    previous: str
    status: VerdictStatus
    reason: str


def policy_for(project: Project, **overrides: float | int | None) -> VerdictPolicy:
    """The project's verdict policy (its `gate_*` settings over the defaults), then the `overrides` given."""
    values: dict[str, Any] = {
        "tolerance": project.gate_tolerance,
        "absolute_margin": project.gate_absolute_margin,
        "min_sessions": project.gate_min_sessions,
        "watch_minutes": project.gate_watch_minutes,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return VerdictPolicy(**{k: v for k, v in values.items() if v is not None})


def anomaly_summaries(anomalies: Sequence[Anomaly]) -> list[AnomalySummary]:
    return [
        AnomalySummary(
            id=a.id,
            kind=a.kind,
            title=a.title,
            crossed_at=a.crossed_at,
            top_suspect=(a.suspects or [None])[0],
            evidence=_evidence(a),
        )
        for a in anomalies
    ]


def _evidence(anomaly: Anomaly) -> float | None:
    value = (anomaly.details or {}).get("evidence")
    return float(value) if isinstance(value, int | float) else None


def record_verdicts(
    session: Session, project: Project, exposures: Sequence[ReleaseExposure], at: datetime
) -> list[VerdictChange]:
    """Judge each measured deploy under the project's policy and keep counts and verdict; the changes."""
    policy = policy_for(project)
    changes = []
    for exposure in exposures:
        deploy = session.get(Deploy, exposure.deploy_id)
        if deploy is None:
            continue
        anomalies = anomaly_summaries(failing_anomalies(session, project_id=project.id, deploy=deploy))
        verdict = deploy_verdict(exposure, anomalies, policy, at)
        previous = save_verdict(
            session,
            project_id=project.id,
            deploy_id=deploy.id,
            status=str(verdict.status),
            reason=verdict.reason,
            measured_at=exposure.measured_at,
            inputs=exposure_as_inputs(exposure),
        )
        if previous is not None:
            changes.append(VerdictChange(deploy.id, previous, verdict.status, verdict.reason))
    return changes


def current_verdict(
    session: Session, project: Project, deploy: Deploy, **overrides: float | int | None
) -> tuple[Verdict, datetime | None]:
    """The deploy's verdict on the latest pass's counts (and its anomalies as they stand now), under the
    project's policy with `overrides`; and when those counts were measured (None: no pass yet)."""
    policy = policy_for(project, **overrides)
    exposure = stored_exposure(session, deploy)
    if exposure is None:
        return pending_without_pass(deploy, datetime.now(UTC)), None
    anomalies = anomaly_summaries(failing_anomalies(session, project_id=project.id, deploy=deploy))
    return deploy_verdict(exposure, anomalies, policy, exposure.measured_at), exposure.measured_at


def exposure_as_inputs(exposure: ReleaseExposure) -> dict[str, Any]:
    return {
        "started": list(exposure.started),
        "errored": list(exposure.errored),
        "baseline_started": exposure.baseline_started,
        "baseline_errored": exposure.baseline_errored,
        "new_signatures": [asdict(s) for s in exposure.new_signatures],
    }


def stored_exposure(session: Session, deploy: Deploy) -> ReleaseExposure | None:
    """What the latest pass measured of the deploy's release (None before a pass has seen the deploy)."""
    row = verdict_row(session, deploy.id)
    if row is None:
        return None
    inputs = row.inputs or {}
    return ReleaseExposure(
        deploy_id=deploy.id,
        release=deploy.release,
        environment=deploy.environment,
        deployed_at=deploy.deployed_at,
        measured_at=row.measured_at,
        started=tuple(float(v) for v in inputs.get("started", ())),
        errored=tuple(float(v) for v in inputs.get("errored", ())),
        baseline_started=float(inputs.get("baseline_started", 0.0)),
        baseline_errored=float(inputs.get("baseline_errored", 0.0)),
        new_signatures=tuple(NewSignature(**s) for s in inputs.get("new_signatures", ())),
    )


def pending_without_pass(deploy: Deploy, at: datetime) -> Verdict:
    """The verdict of a deploy no pass has measured yet."""
    return Verdict(
        status=VerdictStatus.PENDING,
        reason="watching: no detection pass has measured this deploy yet.",
        sessions=0,
        errored_sessions=0,
        rate=None,
        old_rate=None,
        bound=None,
        margin=None,
        minutes_since_deploy=max(int((at - deploy.deployed_at).total_seconds() // 60), 0),
    )


SUSPECT_FIELDS = ("sha", "message", "author_name", "author_email", "score", "evidence")


def verdict_as_dict(deploy: Deploy, verdict: Verdict, *, measured_at: datetime | None) -> dict[str, Any]:
    """The verdict as the API answers it (and the webhook posts it)."""
    return {
        "status": str(verdict.status),
        "reason": verdict.reason,
        "deploy_id": deploy.id,
        "release": deploy.release,
        "environment": deploy.environment,
        "deployed_at": deploy.deployed_at,
        "measured_at": measured_at,
        "minutes_since_deploy": verdict.minutes_since_deploy,
        "sessions": verdict.sessions,
        "errored_sessions": verdict.errored_sessions,
        "rate": verdict.rate,
        "old_rate": verdict.old_rate,
        "bound": verdict.bound,
        "margin": verdict.margin,
        "healthy_after_minutes": verdict.healthy_after_minutes,
        "anomalies": [
            {
                "id": a.id,
                "kind": a.kind,
                "title": a.title,
                "crossed_at": a.crossed_at,
                "evidence": a.evidence,
                "top_suspect": {k: a.top_suspect[k] for k in SUSPECT_FIELDS if k in a.top_suspect}
                if a.top_suspect
                else None,
            }
            for a in verdict.anomalies
        ],
    }
