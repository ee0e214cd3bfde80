"""Deploys: record one (`POST /api/v1/projects/{slug}/deploys`) and read them back, with their commits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import schemas
from api.deps import DeployProject, DeployReadProject, SessionDep, StateDep
from api.pagination import TIME_ID_CURSOR, decode_cursor, page
from api.routes.intake import read_bounded_body
from api.schemas import documented
from api.state import AppState
from detector.deploys.records import parse_commit_list, parse_sha, parse_timestamp
from detector.deploys.service import DeployHook, record_deploy
from detector.errors import InvalidInput
from detector.json_text import NotJson, parse_json
from detector.sources.git_repo import GitRepo
from detector.store.deploys import get_deploy, list_deploys

router = APIRouter(prefix="/api/v1", tags=["deploys"])

MAX_BODY_BYTES = 25 * 1024 * 1024
Limit = Annotated[int, Query(ge=1, le=500)]


async def json_body(request: Request, *, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The request's JSON body; `InvalidInput` (400) when it is not JSON, 413 as soon as it passes `max_bytes`."""
    body = await read_bounded_body(request, max_bytes)
    try:
        return parse_json(body or b"null", "request body")
    except NotJson as exc:
        raise InvalidInput(str(exc)) from exc


def json_object(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInput("request body must be a JSON object")
    return data


def deploy_hook(state: AppState) -> DeployHook | None:
    """What runs after each new deploy (detection), when the app was built with one."""
    hook: DeployHook | None = getattr(state, "on_deploy", None)
    return hook


# -- documentation of the request body (validation is done by the parsers, to answer 400) ---------


class FileIn(BaseModel):
    path: str
    change_type: Literal["A", "M", "D", "R"] = "M"
    old_path: str | None = None
    additions: int | None = None
    deletions: int | None = None
    patch: str | None = None


class AuthorIn(BaseModel):
    name: str = ""
    email: str = ""


class CommitIn(BaseModel):
    sha: str
    message: str = ""
    author: AuthorIn = Field(default_factory=AuthorIn)
    timestamp: str | None = None
    repository: str = ""
    files: list[FileIn] = Field(default_factory=list)


class DeployIn(BaseModel):
    release: str
    environment: str
    sha: str | None = Field(None, description="The deployed commit; resolved in the linked repository.")
    from_sha: str | None = Field(None, description="Start of the range (default: the previous deploy's sha).")
    started: str | float | None = Field(None, description="ISO 8601 or unix seconds.")
    finished: str | float | None = Field(None, description="ISO 8601 or unix seconds; the deploy time.")
    name: str | None = None
    url: str | None = None
    commits: list[CommitIn] | None = Field(None, description="The deploy's commits, if not read from git.")


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)  # type: ignore[no-any-return]


DEPLOY_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": _inline_schema(DeployIn)}}}}


# -- routes -----------------------------------------------------------------------------------------


@router.post(
    "/projects/{slug}/deploys",
    status_code=201,
    openapi_extra=DEPLOY_BODY,
    response_model=None,
    responses={
        201: {"model": schemas.Deploy, "description": "Recorded"},
        200: {"model": schemas.Deploy, "description": "Already recorded (the same deploy sent again)"},
    },
)
async def create_deploy(request: Request, project: DeployProject, session: SessionDep, state: StateDep) -> JSONResponse:
    """Record a deploy. Commits come from `commits`, else from the linked repository between
    `from_sha` (or the previous deploy's sha) and `sha`, else from the release. 201 when recorded,
    200 when the same deploy was already recorded."""
    data = json_object(await json_body(request))
    release, environment = data.get("release"), data.get("environment")
    for name, value in (("release", release), ("environment", environment)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{name} is required (a non-empty string)")
    sha = parse_sha(data["sha"], name="sha") if data.get("sha") is not None else None
    from_sha = parse_sha(data["from_sha"], name="from_sha") if data.get("from_sha") is not None else None
    commits = parse_commit_list(data["commits"], shape="api") if data.get("commits") is not None else None
    if from_sha and commits is None and not project.repo_path:
        raise InvalidInput(
            f"from_sha needs a linked repository: project {project.slug!r} has none "
            f"(run `detector project set-repo {project.slug} PATH`, or send commits)"
        )
    now = datetime.now(UTC)
    deploy = record_deploy(
        session,
        project=project,
        release=str(release),
        environment=str(environment),
        date_started=parse_timestamp(data.get("started"), name="started"),
        date_finished=parse_timestamp(data.get("finished"), name="finished"),
        name=_optional_text(data, "name"),
        url=_optional_text(data, "url"),
        sha=sha,
        from_sha=from_sha,
        commits=commits,
        source="api",
        repo=GitRepo(project.repo_path) if project.repo_path else None,
        require_known_sha=bool(project.repo_path) and commits is None,
        on_deploy=deploy_hook(state),
        now=now,
    )
    created = deploy.created_at == now
    deploy_id = deploy.id
    session.commit()
    body = get_deploy(session, project_id=project.id, deploy_id=deploy_id)
    return JSONResponse(body, status_code=201 if created else 200)


@router.get("/projects/{slug}/deploys", **documented(schemas.DeployPage))
def deploys(
    project: DeployReadProject,
    session: SessionDep,
    environment: str | None = None,
    release: str | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Deploys, newest first, each with its commits and their changed files (no hunks)."""
    after = decode_cursor(cursor, TIME_ID_CURSOR)
    rows = list_deploys(
        session, project_id=project.id, environment=environment, release=release, after=after, limit=limit
    )
    last = rows[limit - 1] if len(rows) > limit else None
    return page(rows, limit, [last["deployed_at"], last["id"]] if last else None)


@router.get("/projects/{slug}/deploys/{deploy_id}", **documented(schemas.Deploy))
def deploy_detail(
    project: DeployReadProject,
    session: SessionDep,
    deploy_id: int,
    include: Annotated[str | None, Query(description="`patch` adds each file's diff hunks.")] = None,
) -> dict[str, Any]:
    return get_deploy(session, project_id=project.id, deploy_id=deploy_id, include_patch=include == "patch")


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{key}: expected a string")
    return value
