"""Deploy verdicts for CI and rollout controllers: the verdict as JSON (Argo Rollouts' `web` metric reads it
with a `jsonPath`), and a gate that answers 2xx only for `healthy` (a Flagger webhook needs the status alone)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials

from api import schemas
from api.deps import API_TOKEN, DEPLOY, READ, DeployReadProject, SessionDep, StateDep, check_scopes
from api.routes.deploys import MAX_BODY_BYTES
from api.routes.intake import read_bounded_body
from detector.errors import Unauthorized
from detector.json_text import NotJson, parse_json
from detector.model.verdict import VerdictStatus
from detector.store.models import Deploy, Project
from detector.store.projects import get_project_by_slug
from detector.store.verdicts import latest_release_deploy, project_deploy
from detector.times import json_ready
from detector.verdicts import current_verdict, verdict_as_dict

router = APIRouter(prefix="/api/v1", tags=["verdicts"])

Tolerance = Annotated[
    float | None, Query(ge=1.0, le=100.0, description="Relative margin for this answer (default: the project's).")
]
MinSessions = Annotated[
    int | None, Query(ge=1, le=100_000_000, description="Sessions needed for `healthy` (default: the project's).")
]
GATE_REFUSED = 412
"""The gate's answer for anything but `healthy` (Flagger counts any non-2xx as a failed check)."""
GATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": schemas.Verdict, "description": "healthy"},
    GATE_REFUSED: {"model": schemas.Verdict, "description": "pending, failing or inconclusive"},
}


async def gate_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(API_TOKEN)]
) -> str:
    """The bearer token, or for a POST without one the `metadata.token` of its JSON body: a Flagger webhook
    sends no headers of its own, only the canary's `metadata` in its body."""
    if credentials is not None and credentials.credentials.strip():
        return credentials.credentials.strip()
    if request.method == "POST":
        try:
            body = parse_json(await read_bounded_body(request, MAX_BODY_BYTES), "request body")
        except NotJson:
            body = None
        metadata = body.get("metadata") if isinstance(body, dict) else None
        token = metadata.get("token") if isinstance(metadata, dict) else None
        if isinstance(token, str) and token.strip():
            return token.strip()
    raise Unauthorized("missing API token: send 'Authorization: Bearer <token>', or a Flagger `metadata.token`")


GateToken = Annotated[str, Depends(gate_token)]


def gate_project(slug: str, session: SessionDep, state: StateDep, token: GateToken) -> Project:
    check_scopes(state, token, (READ, DEPLOY), "read verdicts")
    return get_project_by_slug(session, slug)


GateProjectDep = Annotated[Project, Depends(gate_project)]


def _verdict(
    session: SessionDep, project: Project, deploy: Deploy, tolerance: float | None, min_sessions: int | None
) -> dict[str, Any]:
    verdict, measured_at = current_verdict(session, project, deploy, tolerance=tolerance, min_sessions=min_sessions)
    return json_ready(verdict_as_dict(deploy, verdict, measured_at=measured_at))  # type: ignore[no-any-return]


def _gate(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=200 if body["status"] == VerdictStatus.HEALTHY else GATE_REFUSED)


@router.get("/projects/{slug}/deploys/{deploy_id}/verdict", **schemas.documented(schemas.Verdict))
def deploy_verdict(
    project: DeployReadProject,
    session: SessionDep,
    deploy_id: int,
    tolerance: Tolerance = None,
    min_sessions: MinSessions = None,
) -> dict[str, Any]:
    """The deploy's verdict, as the latest detection pass measured it."""
    deploy = project_deploy(session, project_id=project.id, deploy_id=deploy_id)
    return _verdict(session, project, deploy, tolerance, min_sessions)


@router.get("/projects/{slug}/releases/{version}/verdict", **schemas.documented(schemas.Verdict))
def release_verdict(
    project: DeployReadProject,
    session: SessionDep,
    version: str,
    environment: str | None = None,
    tolerance: Tolerance = None,
    min_sessions: MinSessions = None,
) -> dict[str, Any]:
    """The verdict of the release's latest deploy (to `environment`, when given)."""
    deploy = latest_release_deploy(session, project_id=project.id, release=version, environment=environment)
    return _verdict(session, project, deploy, tolerance, min_sessions)


@router.get("/projects/{slug}/deploys/{deploy_id}/gate", response_model=None, responses=GATE_RESPONSES)
@router.post("/projects/{slug}/deploys/{deploy_id}/gate", response_model=None, responses=GATE_RESPONSES)
def deploy_gate(
    project: GateProjectDep,
    session: SessionDep,
    deploy_id: int,
    tolerance: Tolerance = None,
    min_sessions: MinSessions = None,
) -> JSONResponse:
    """200 when the deploy is `healthy`, 412 otherwise, with the verdict as the body (POST for webhooks)."""
    deploy = project_deploy(session, project_id=project.id, deploy_id=deploy_id)
    return _gate(_verdict(session, project, deploy, tolerance, min_sessions))


@router.get("/projects/{slug}/releases/{version}/gate", response_model=None, responses=GATE_RESPONSES)
@router.post("/projects/{slug}/releases/{version}/gate", response_model=None, responses=GATE_RESPONSES)
def release_gate(
    project: GateProjectDep,
    session: SessionDep,
    version: str,
    environment: str | None = None,
    tolerance: Tolerance = None,
    min_sessions: MinSessions = None,
) -> JSONResponse:
    """200 when the release's latest deploy is `healthy`, 412 otherwise, with the verdict as the body."""
    deploy = latest_release_deploy(session, project_id=project.id, release=version, environment=environment)
    return _gate(_verdict(session, project, deploy, tolerance, min_sessions))
