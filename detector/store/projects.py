"""Projects and API tokens: creation, lookup, and key checks."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from detector.errors import Conflict, InvalidInput, NotFound
from detector.store.models import ApiToken, Project, RawItem, Release, ReleaseProject
from detector.store.scopes import ALL_SCOPES, TokenScope, scopes_as_text, scopes_from_text
from detector.times import iso_utc

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")


def create_project(
    session: Session, *, slug: str, org: str, platform: str = "javascript", repo_path: str | None = None
) -> Project:
    """A new project with a fresh public key; `Conflict` if the slug is taken."""
    if not SLUG_PATTERN.match(slug):
        raise InvalidInput(
            f"invalid project slug {slug!r}: use 1-50 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    if session.scalar(select(Project.id).where(Project.slug == slug)) is not None:
        raise Conflict(f"project {slug!r} already exists")
    project = Project(
        slug=slug,
        org=org,
        platform=platform,
        public_key=secrets.token_hex(16),
        repo_path=repo_path,
        github_secret=secrets.token_hex(20),
        created_at=datetime.now(UTC),
    )
    session.add(project)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"project {slug!r} already exists") from exc
    return project


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))


def get_project_by_slug(session: Session, slug: str) -> Project:
    project = session.scalar(select(Project).where(Project.slug == slug))
    if project is None:
        raise NotFound(f"no project with slug {slug!r}")
    return project


def delete_project(session: Session, project_id: int) -> None:
    """Delete a project and everything recorded for it (the schema's foreign keys cascade from `projects`),
    then those of its releases no other project links. The raw queue's rows go explicitly: on SQLite they
    live in a file of their own, which no foreign key reaches."""
    releases = list(session.scalars(select(ReleaseProject.release_id).where(ReleaseProject.project_id == project_id)))
    session.execute(delete(RawItem).where(RawItem.project_id == project_id))
    session.execute(delete(Project).where(Project.id == project_id))
    if releases:
        linked = exists().where(ReleaseProject.release_id == Release.id)
        session.execute(delete(Release).where(Release.id.in_(releases), ~linked))


def get_project_by_id(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project with id {project_id}")
    return project


def dsn_for(project: Project, public_url: str) -> str:
    """The DSN an SDK is configured with: `{scheme}://{public_key}@{host}/{project_id}`."""
    scheme, rest = public_url.rstrip("/").split("://", 1)
    return f"{scheme}://{project.public_key}@{rest}/{project.id}"


def project_as_dict(project: Project, public_url: str) -> dict[str, object]:
    return {
        "id": project.id,
        "slug": project.slug,
        "org": project.org,
        "platform": project.platform,
        "public_key": project.public_key,
        "dsn": dsn_for(project, public_url),
        "repo_path": project.repo_path,
        "rate_limit_per_minute": project.rate_limit_per_minute,
        "created_at": iso_utc(project.created_at),
    }


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, label: str = "", scopes: Iterable[TokenScope] = ALL_SCOPES) -> str:
    """A new API token allowed `scopes` (every scope by default); only its hash is stored, so the returned
    value is shown once."""
    chosen = frozenset(scopes)
    if not chosen:
        raise InvalidInput("a token needs at least one scope: " + ", ".join(TokenScope))
    token = "dtk_" + secrets.token_urlsafe(32)
    row = ApiToken(
        token_hash=hash_token(token), label=label, created_at=datetime.now(UTC), scopes=scopes_as_text(chosen)
    )
    session.add(row)
    session.flush()
    return token


def token_scopes(session: Session, token: str) -> frozenset[TokenScope] | None:
    """The scopes of a known token; None for a token that is not one of ours."""
    stored = session.scalar(select(ApiToken.scopes).where(ApiToken.token_hash == hash_token(token)))
    return None if stored is None else scopes_from_text(stored)


def list_tokens(session: Session) -> list[dict[str, object]]:
    """Every token as `detector token list` shows it (never the token itself: only its hash is kept)."""
    rows = session.scalars(select(ApiToken).order_by(ApiToken.id))
    return [
        {"id": t.id, "label": t.label, "scopes": t.scopes.split(), "created_at": iso_utc(t.created_at)} for t in rows
    ]


GATE_SETTINGS = (
    "gate_tolerance",
    "gate_absolute_margin",
    "gate_min_sessions",
    "gate_watch_minutes",
    "verdict_webhook_url",
    "verdict_webhook_secret",
)


def set_gate_settings(session: Session, project: Project, **values: object) -> dict[str, object]:
    """Set the given verdict settings (`GATE_SETTINGS`; None leaves one as it is, "" clears a text one);
    the project's settings after."""
    for name, value in values.items():
        if name not in GATE_SETTINGS:
            raise InvalidInput(f"unknown gate setting {name!r}")
        if value is not None:
            setattr(project, name, None if value == "" else value)
    return {name: getattr(project, name) for name in GATE_SETTINGS}
