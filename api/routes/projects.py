"""Projects, signatures and events (read side)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import schemas
from api.deps import ReadProject, ReadToken, SessionDep, StateDep, UtcTime
from api.pagination import ID_CURSOR, decode_cursor, page
from api.schemas import documented
from detector.errors import NotFound
from detector.store.models import Signature
from detector.store.projects import list_projects, project_as_dict
from detector.store.signatures import get_event, list_signatures, signature_series

router = APIRouter(prefix="/api/v1", tags=["projects"])

Limit = Annotated[int, Query(ge=1, le=1000)]
SERIES_DEFAULT_WINDOW = timedelta(hours=24)


@router.get("/projects", **documented(schemas.ProjectPage))
def projects(session: SessionDep, state: StateDep, _token: ReadToken) -> dict[str, Any]:
    items = [project_as_dict(p, state.settings.public_url) for p in list_projects(session)]
    return {"items": items, "next": None}


@router.get("/projects/{slug}", **documented(schemas.Project))
def project_detail(project: ReadProject, state: StateDep) -> dict[str, Any]:
    return project_as_dict(project, state.settings.public_url)


@router.get("/projects/{slug}/signatures", **documented(schemas.SignaturePage))
def signatures(
    project: ReadProject,
    session: SessionDep,
    release: str | None = None,
    environment: str | None = None,
    since: UtcTime | None = None,
    cursor: str | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Signatures by id, each with `events`, distinct `users` and the `releases` it was seen in, within
    the `release` and `environment` given; with `since`, only signatures seen from that minute on, and
    their events and users from that minute on. Read from totals the digest keeps as it counts."""
    rows = list_signatures(
        session,
        project_id=project.id,
        release=release,
        environment=environment,
        since=since,
        after_id=decode_cursor(cursor, ID_CURSOR),
        limit=limit,
    )
    return page(rows, limit, rows[limit - 1]["id"] if len(rows) > limit else None)


@router.get("/projects/{slug}/signatures/{signature_id}/series", **documented(schemas.SeriesPage))
def signature_timeseries(
    project: ReadProject,
    session: SessionDep,
    signature_id: int,
    since: UtcTime | None = None,
    until: UtcTime | None = None,
) -> dict[str, Any]:
    """Per-minute counts by release. Without `since`, the 24 hours up to `until` (default: the signature's
    last sighting): a series is for looking at, and a busy signature has weeks of minutes."""
    sig = session.get(Signature, signature_id)
    if sig is None or sig.project_id != project.id:
        raise NotFound(f"no signature {signature_id} in project {project.slug!r}")
    if since is None:
        since = (until or sig.last_seen) - SERIES_DEFAULT_WINDOW
    return {
        "items": signature_series(session, signature_id=signature_id, since=since, until=until),
        "next": None,
    }


@router.get("/projects/{slug}/events/{event_id}", **documented(schemas.Event))
def event_detail(project: ReadProject, session: SessionDep, event_id: str) -> dict[str, Any]:
    return get_event(session, project_id=project.id, event_id=event_id)
