"""GitHub webhooks: `deployment_status` (success) records a deploy, `push` records commits.

GitHub cannot send our Bearer token, so a webhook names its project (`?project=SLUG` or the
`X-Detector-Project` header) and proves itself with `X-Hub-Signature-256`, the HMAC-SHA256 of the raw
body keyed with the project's secret (`detector project github-secret SLUG`). Nothing is read from
the body before the signature holds.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from api import schemas
from api.deps import SessionDep, StateDep
from api.routes.deploys import MAX_BODY_BYTES, deploy_hook, json_object
from api.routes.intake import read_bounded_body
from detector.deploys.service import record_commits, record_deploy
from detector.errors import InvalidInput, Unauthorized
from detector.json_text import NotJson, parse_json
from detector.sources.github import parse_deployment_status, parse_push, verify_signature
from detector.store.projects import get_project_by_slug

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


@router.post(
    "/github",
    response_model=None,
    responses={
        200: {"model": schemas.WebhookAnswer, "description": "A ping, or the commits of a push recorded"},
        201: {"model": schemas.Deploy, "description": "A deployment_status that recorded a deploy"},
        202: {"model": schemas.WebhookAnswer, "description": "Accepted and ignored (the reason is given)"},
    },
)
async def github_webhook(
    request: Request,
    session: SessionDep,
    state: StateDep,
    project: str | None = None,
    x_detector_project: Annotated[str | None, Header()] = None,
    x_github_event: Annotated[str | None, Header()] = None,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """200 for `ping` and `push`, 201 for a recorded deploy, 202 for events and states we ignore,
    401 for a missing or wrong signature (nothing recorded)."""
    slug = project or x_detector_project
    if not slug:
        raise InvalidInput("name the project: ?project=SLUG or the X-Detector-Project header")
    target = get_project_by_slug(session, slug)
    # refused while streaming: an unauthenticated sender cannot make this process hold more than the limit
    body = await read_bounded_body(request, MAX_BODY_BYTES)
    if not x_hub_signature_256:
        raise Unauthorized("missing X-Hub-Signature-256: set the webhook's secret to the project's github secret")
    if not verify_signature(target.github_secret, body, x_hub_signature_256):
        raise Unauthorized("X-Hub-Signature-256 does not match this project's github secret")
    try:
        payload = json_object(parse_json(body, "webhook body"))
    except NotJson as exc:
        raise InvalidInput(str(exc)) from exc

    event = (x_github_event or "").lower()
    if event == "ping":
        return JSONResponse({"ok": True, "event": "ping"})
    if event == "deployment_status":
        deployment = parse_deployment_status(payload)
        if deployment.state != "success":
            return _ignored(f"deployment_status with state {deployment.state!r}")
        deploy = record_deploy(
            session,
            project=target,
            release=deployment.release,
            environment=deployment.environment,
            date_started=deployment.started,
            date_finished=deployment.finished,
            name=f"github:{deployment.task}:{deployment.deployment_id}",
            url=deployment.url,
            sha=deployment.sha,
            source="github",
            dedupe_key=f"github:{deployment.deployment_id}",
            on_deploy=deploy_hook(state),
        )
        answer: dict[str, Any] = {"deploy_id": deploy.id, "release": deploy.release, "environment": deploy.environment}
        session.commit()
        return JSONResponse(answer, status_code=201)
    if event == "push":
        commits = parse_push(payload)
        ids = record_commits(session, project=target, commits=commits)
        session.commit()
        return JSONResponse({"commits": len(ids)})
    return _ignored(f"event {event or 'without X-GitHub-Event'!r}")


def _ignored(reason: str) -> JSONResponse:
    return JSONResponse({"ignored": reason}, status_code=202)
