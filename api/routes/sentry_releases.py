"""The Sentry web API subset sentry-cli uses for releases, commits and deploys.

Paths, bodies and answers follow what sentry-cli 3.x sends and parses (see
fixtures/real-clients/sentry-cli-releases.requests.json). Authenticated with the same Bearer tokens
as the native API (`detector token create`). Versions contain '@' and may contain '/', hence
`{version:path}`; the sub-resources are declared before the bare release so they match first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import DeployReadToken, DeployToken, SessionDep, StateDep
from api.routes.deploys import deploy_hook, json_body, json_object
from detector.deploys.records import parse_commit_list, parse_timestamp
from detector.deploys.service import RefRange, record_deploy, record_release_commits, record_release_refs
from detector.errors import InvalidInput, NotFound
from detector.store import deploys as store
from detector.store.models import Commit, Deploy, Project, Release, ReleaseCommit

router = APIRouter(prefix="/api/0", tags=["sentry-compatible"])


# -- organisation, projects, repositories -----------------------------------------------------------


def org_projects(session: Session, org: str) -> list[Project]:
    """The organisation's projects; `NotFound` when no project belongs to `org`."""
    projects = list(session.scalars(select(Project).where(Project.org == org).order_by(Project.id)))
    if not projects:
        known = sorted(set(session.scalars(select(Project.org))))
        hint = f" (known: {', '.join(known)})" if known else ""
        raise NotFound(f"organization {org!r} not found{hint}: check SENTRY_ORG")
    return projects


def projects_named(session: Session, org: str, slugs: Any) -> list[Project]:
    if slugs is None:
        return []
    if not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs):
        raise InvalidInput("projects: expected a list of project slugs")
    by_slug = {p.slug: p for p in org_projects(session, org)}
    missing = [s for s in slugs if s not in by_slug]
    if missing:
        raise NotFound(f"project {missing[0]!r} not found in organization {org!r}: check SENTRY_PROJECT")
    return [by_slug[s] for s in dict.fromkeys(slugs)]


def release_in_org(session: Session, org: str, version: str) -> Release:
    org_projects(session, org)
    return store.get_release(session, org=org, version=version)


@router.get("/organizations/{org}/repos/")
def repositories(org: str, session: SessionDep, _token: DeployReadToken) -> list[dict[str, Any]]:
    """No hosted repositories: commits arrive with `set-commits --local`, or are read from a linked clone."""
    org_projects(session, org)
    return []


# -- releases ---------------------------------------------------------------------------------------


@router.get("/organizations/{org}/releases/")
def list_releases(
    org: str, session: SessionDep, _token: DeployReadToken, project: str | None = None
) -> list[dict[str, Any]]:
    projects = org_projects(session, org)
    stmt = select(Release).where(Release.org == org).order_by(Release.date_created.desc()).limit(1000)
    releases = list(session.scalars(stmt))
    if project is not None:
        wanted = {p.id for p in projects if p.slug == project}
        releases = [r for r in releases if wanted & {p.id for p in store.release_projects(session, release_id=r.id)}]
    return [release_as_sentry(session, r) for r in releases[:100]]


@router.post("/organizations/{org}/releases/")
async def create_release(org: str, request: Request, session: SessionDep, _token: DeployToken) -> JSONResponse:
    """Create the release, or return the existing one (208, as Sentry does) with the fields updated."""
    data = json_object(await json_body(request))
    projects = projects_named(session, org, data.get("projects"))
    if not projects:
        raise InvalidInput("projects: at least one project slug is required")
    return _create_release(session, org=org, data=data, projects=projects)


@router.post("/projects/{org}/{project}/releases/")
async def create_project_release(
    org: str, project: str, request: Request, session: SessionDep, _token: DeployToken
) -> JSONResponse:
    """The older project-scoped form of release creation (sentry-cli 1.x/2.x single-project calls)."""
    data = json_object(await json_body(request))
    projects = projects_named(session, org, [project, *(data.get("projects") or [])])
    return _create_release(session, org=org, data=data, projects=projects)


@router.get("/organizations/{org}/releases/{version:path}/previous-with-commits/")
def previous_with_commits(org: str, version: str, session: SessionDep, _token: DeployReadToken) -> dict[str, Any]:
    """The newest earlier release with commits (sentry-cli starts `set-commits` after its last
    commit), or `{}` when there is none."""
    release = release_in_org(session, org, version)
    previous = store.previous_release_with_commits(session, release=release)
    return release_as_sentry(session, previous) if previous else {}


@router.get("/organizations/{org}/releases/{version:path}/commits/")
def release_commits(org: str, version: str, session: SessionDep, _token: DeployReadToken) -> list[dict[str, Any]]:
    release = release_in_org(session, org, version)
    rows = session.scalars(
        select(Commit)
        .join(ReleaseCommit, ReleaseCommit.commit_id == Commit.id)
        .where(ReleaseCommit.release_id == release.id)
        .order_by(ReleaseCommit.position.desc())
    )
    seen: dict[str, Commit] = {}
    for commit in rows:
        seen.setdefault(commit.sha, commit)
    return [commit_as_sentry(c) for c in seen.values()]


@router.post("/organizations/{org}/releases/{version:path}/deploys/", status_code=201)
async def create_deploy(
    org: str, version: str, request: Request, session: SessionDep, state: StateDep, _token: DeployToken
) -> dict[str, Any]:
    """Record a deploy of an existing release for each of its projects (or the `projects` named)."""
    data = json_object(await json_body(request))
    release = release_in_org(session, org, version)
    targets = projects_named(session, org, data.get("projects")) or store.release_projects(
        session, release_id=release.id
    )
    if not targets:
        raise InvalidInput(f"release {version!r} has no projects to deploy")
    environment = data.get("environment")
    if not isinstance(environment, str) or not environment.strip():
        raise InvalidInput("environment is required")
    name, url = data.get("name"), data.get("url")
    for key, value in (("name", name), ("url", url)):
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{key}: expected a string")
    started = parse_timestamp(data.get("dateStarted"), name="dateStarted")
    finished = parse_timestamp(data.get("dateFinished"), name="dateFinished")
    hook = deploy_hook(state)
    recorded = [
        record_deploy(
            session,
            project=project,
            release=version,
            environment=environment,
            date_started=started,
            date_finished=finished,
            name=name,
            url=url,
            source="sentry-cli",
            on_deploy=hook,
        )
        for project in targets
    ]
    answer = deploy_as_sentry(recorded[0])
    session.commit()
    return answer


@router.get("/organizations/{org}/releases/{version:path}/deploys/")
def list_release_deploys(org: str, version: str, session: SessionDep, _token: DeployReadToken) -> list[dict[str, Any]]:
    release = release_in_org(session, org, version)
    return [deploy_as_sentry(d) for d in store.release_deploys(session, release=release)]


@router.get("/organizations/{org}/releases/{version:path}/")
def release_detail(org: str, version: str, session: SessionDep, _token: DeployReadToken) -> dict[str, Any]:
    return release_as_sentry(session, release_in_org(session, org, version))


@router.get("/projects/{org}/{project}/releases/{version:path}/")
def project_release_detail(
    org: str, project: str, version: str, session: SessionDep, _token: DeployReadToken
) -> dict[str, Any]:
    projects_named(session, org, [project])
    return release_as_sentry(session, release_in_org(session, org, version))


@router.put("/organizations/{org}/releases/{version:path}/")
async def update_release(
    org: str, version: str, request: Request, session: SessionDep, _token: DeployToken
) -> dict[str, Any]:
    """Update a release: `commits` (set-commits --local) replace its commits, enriched from linked
    repositories; `refs` read ranges from linked repositories; `dateReleased` finalizes it."""
    data = json_object(await json_body(request))
    release_in_org(session, org, version)
    projects = projects_named(session, org, data.get("projects"))
    release, _ = _apply_release_update(session, org=org, version=version, data=data, projects=projects)
    session.commit()
    return release_as_sentry(session, release)


@router.put("/projects/{org}/{project}/releases/{version:path}/")
async def update_project_release(
    org: str, project: str, version: str, request: Request, session: SessionDep, _token: DeployToken
) -> dict[str, Any]:
    data = json_object(await json_body(request))
    release_in_org(session, org, version)
    projects = projects_named(session, org, [project, *(data.get("projects") or [])])
    release, _ = _apply_release_update(session, org=org, version=version, data=data, projects=projects)
    session.commit()
    return release_as_sentry(session, release)


# -- internals --------------------------------------------------------------------------------------


def _create_release(
    session: Session, *, org: str, data: Mapping[str, Any], projects: Sequence[Project]
) -> JSONResponse:
    version = data.get("version")
    if not isinstance(version, str) or not version.strip() or len(version) > 250 or "\n" in version:
        raise InvalidInput("version is required: a release name of at most 250 characters on one line")
    release, created = _apply_release_update(session, org=org, version=version.strip(), data=data, projects=projects)
    session.commit()
    return JSONResponse(release_as_sentry(session, release), status_code=201 if created else 208)


def _apply_release_update(
    session: Session, *, org: str, version: str, data: Mapping[str, Any], projects: Sequence[Project]
) -> tuple[Release, bool]:
    """Create or update the release from a Sentry body; (release, created)."""
    release, created = store.upsert_release(
        session,
        org=org,
        version=version,
        project_ids=[p.id for p in projects],
        ref=_text(data, "ref"),
        url=_text(data, "url"),
        date_started=parse_timestamp(data.get("dateStarted"), name="dateStarted"),
        date_released=parse_timestamp(data.get("dateReleased"), name="dateReleased"),
    )
    if data.get("commits") is not None:
        commits = parse_commit_list(data["commits"], shape="sentry")
        record_release_commits(session, release=release, commits=commits, newest_first=True)
    if data.get("refs") is not None:
        record_release_refs(session, release=release, refs=_parse_refs(data["refs"]))
    return release, created


def _parse_refs(value: Any) -> list[RefRange]:
    if not isinstance(value, list):
        raise InvalidInput("refs: expected a list")
    refs = []
    for i, ref in enumerate(value):
        if not isinstance(ref, Mapping) or not isinstance(ref.get("commit"), str):
            raise InvalidInput(f"refs[{i}]: expected an object with a commit")
        previous = ref.get("previousCommit")
        refs.append(
            RefRange(
                repository=str(ref.get("repository") or ""),
                commit=ref["commit"],
                previous_commit=previous if isinstance(previous, str) and previous else None,
            )
        )
    return refs


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{key}: expected a string")
    return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _version_info(version: str) -> dict[str, Any]:
    package, _, raw = version.rpartition("@") if "@" in version else ("", "", version)
    return {
        "package": package or None,
        "version": {"raw": raw},
        "description": raw,
        "buildHash": raw if len(raw) == 40 and all(c in "0123456789abcdef" for c in raw) else None,
    }


def commit_as_sentry(commit: Commit) -> dict[str, Any]:
    return {
        "id": commit.sha,
        "message": commit.message,
        "dateCreated": _iso(commit.timestamp),
        "author": {"name": commit.author_name, "email": commit.author_email} if commit.author_email else None,
        "repository": {"name": commit.repository} if commit.repository else None,
    }


def deploy_as_sentry(deploy: Deploy) -> dict[str, Any]:
    return {
        "id": str(deploy.id),
        "environment": deploy.environment,
        "dateStarted": _iso(deploy.date_started),
        "dateFinished": _iso(deploy.date_finished or deploy.deployed_at),
        "name": deploy.name,
        "url": deploy.url,
    }


def release_as_sentry(session: Session, release: Release) -> dict[str, Any]:
    """The release object sentry-cli parses: version, dateCreated, dateReleased, projects,
    lastCommit {id} (where set-commits resumes), plus Sentry's other documented fields."""
    stats = store.release_stats(session, release=release)
    projects = store.release_projects(session, release_id=release.id)
    return {
        "id": release.id,
        "version": release.version,
        "shortVersion": release.version,
        "status": "open",
        "versionInfo": _version_info(release.version),
        "ref": release.ref,
        "url": release.url,
        "dateCreated": _iso(release.date_created),
        "dateStarted": _iso(release.date_started),
        "dateReleased": _iso(release.date_released),
        "data": {},
        "newGroups": 0,
        "owner": None,
        "commitCount": stats.commit_count,
        "lastCommit": commit_as_sentry(stats.last_commit) if stats.last_commit else None,
        "deployCount": stats.deploy_count,
        "lastDeploy": deploy_as_sentry(stats.last_deploy) if stats.last_deploy else None,
        "authors": [{"name": name, "email": email} for name, email in stats.authors],
        "projects": [
            {
                "id": p.id,
                "slug": p.slug,
                "name": p.slug,
                "newGroups": 0,
                "platform": p.platform,
                "platforms": [p.platform],
                "hasHealthData": False,
            }
            for p in projects
        ],
        "firstEvent": None,
        "lastEvent": None,
        "currentProjectMeta": {},
        "userAgent": None,
    }
