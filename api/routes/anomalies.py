"""Anomalies: list, detail (with suspects, evidence and time series), state changes, on-demand passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from api import schemas
from api.deps import AdminProject, ReadProject, SessionDep, StateDep, UtcTime
from api.pagination import ID_CURSOR, decode_cursor, page
from api.schemas import documented
from detector.changes import describe_changes
from detector.notify import channel_for, enqueue_state_change
from detector.scheduling import run_project_pass
from detector.store.anomalies import anomaly_as_dict, get_anomaly, list_anomalies, set_anomaly_state
from detector.store.models import Anomaly, Deploy
from detector.store.signatures import signature_series
from detector.times import iso_utc, json_ready

router = APIRouter(prefix="/api/v1/projects/{slug}", tags=["anomalies"])

Limit = Annotated[int, Query(ge=1, le=500)]


def _with_deploy(session: SessionDep, anomaly: Anomaly) -> Deploy | None:
    return session.get(Deploy, anomaly.deploy_id) if anomaly.deploy_id else None


@router.get("/anomalies", **documented(schemas.AnomalyPage))
def anomalies(
    project: ReadProject,
    session: SessionDep,
    state: StateDep,
    kind: str | None = None,
    anomaly_state: Annotated[str | None, Query(alias="state")] = None,
    release: str | None = None,
    environment: str | None = None,
    deploy_id: int | None = None,
    since: UtcTime | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    rows = list_anomalies(
        session,
        project_id=project.id,
        kind=kind,
        state=anomaly_state,
        release=release,
        environment=environment,
        deploy_id=deploy_id,
        since=since,
        before_id=decode_cursor(cursor, ID_CURSOR),
        limit=limit,
    )
    deploy_ids = {a.deploy_id for a in rows if a.deploy_id}
    by_id = {d.id: d for d in session.scalars(select(Deploy).where(Deploy.id.in_(deploy_ids)))} if deploy_ids else {}
    items = [
        anomaly_as_dict(
            a,
            by_id.get(a.deploy_id) if a.deploy_id else None,
            project_slug=project.slug,
            public_url=state.settings.public_url,
        )
        for a in rows
    ]
    return page(items, limit, rows[limit - 1].id if len(rows) > limit else None)


@router.get("/anomalies/{anomaly_id}", **documented(schemas.AnomalyDetail))
def anomaly_detail(project: ReadProject, session: SessionDep, state: StateDep, anomaly_id: int) -> dict[str, Any]:
    anomaly = get_anomaly(session, project_id=project.id, anomaly_id=anomaly_id)
    data = anomaly_as_dict(
        anomaly,
        _with_deploy(session, anomaly),
        project_slug=project.slug,
        public_url=state.settings.public_url,
    )
    if anomaly.signature_id is not None:
        # the story around the anomaly, in its environment: six hours before it began, up to an hour after
        # its last update (the signature's own series endpoint goes further)
        data["series"] = signature_series(
            session,
            signature_id=anomaly.signature_id,
            since=anomaly.first_seen - timedelta(hours=6),
            until=max(anomaly.updated_at, anomaly.detected_at) + timedelta(hours=1),
            environment=anomaly.environment,
        )
    else:
        data["series"] = []
    return data


@router.post("/anomalies/{anomaly_id}/{action}", **documented(schemas.Anomaly))
def change_anomaly_state(
    project: AdminProject,
    session: SessionDep,
    state: StateDep,
    anomaly_id: int,
    action: Literal["acknowledge", "resolve", "mute", "reopen"],
) -> dict[str, Any]:
    anomaly = set_anomaly_state(session, project_id=project.id, anomaly_id=anomaly_id, action=action)
    # the alert's thread says so too (bot channel), in the transaction that changes the state
    enqueue_state_change(session, anomaly.id, channel=channel_for(state.settings))
    session.commit()
    deploy = _with_deploy(session, anomaly)
    return anomaly_as_dict(anomaly, deploy, project_slug=project.slug, public_url=state.settings.public_url)


@router.post("/detect", **documented(schemas.DetectAnswer))
def detect(project: AdminProject, state: StateDep, at: UtcTime | None = None) -> dict[str, Any]:
    """Run a detection pass now, or as it would have run at `at` (it sees only data up to `at`)."""
    when = at or datetime.now(UTC)
    changes = run_project_pass(state.factory, state.settings, project_id=project.id, at=when)
    with state.factory() as session:
        items = describe_changes(session, changes, project_slug=project.slug, public_url=state.settings.public_url)
    return {"at": iso_utc(when), "changes": json_ready(items)}
