"""FastAPI dependencies as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from sqlalchemy.orm import Session

from api.state import AppState
from detector.errors import Forbidden, Unauthorized
from detector.store.models import Project
from detector.store.projects import get_project_by_slug
from detector.store.scopes import TokenScope, allows
from detector.times import utc_in_range


def get_state(request: Request) -> AppState:
    return request.app.state.detector  # type: ignore[no-any-return]


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


API_TOKEN = HTTPBearer(
    auto_error=False,
    scheme_name="api_token",
    description="An API token from `detector token create` (sentry-cli sends the same as SENTRY_AUTH_TOKEN).",
)
"""Declared in the OpenAPI document, so /docs offers "Authorize" for every route that needs a token."""


def bearer_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(API_TOKEN)]) -> str:
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized("missing API token: send 'Authorization: Bearer <token>' (see `detector token create`)")
    return credentials.credentials.strip()


def check_scopes(state: AppState, token: str, accepted: tuple[TokenScope, ...], what: str) -> None:
    """Unauthorized for an unknown token, Forbidden for one that holds none of `accepted` (admin holds all)."""
    held = state.tokens.scopes_of(token)
    if held is None:
        raise Unauthorized("unknown API token")
    if not allows(held, accepted):
        needed = " or ".join(f"'{scope}'" for scope in accepted)
        has = ", ".join(scope for scope in TokenScope if scope in held) or "none"
        raise Forbidden(
            f"this API token may not {what}: that needs the {needed} scope (the token has: {has}); "
            f"make one with `detector token create --scope {accepted[0]}`"
        )


def token_with(*accepted: TokenScope, what: str) -> Callable[..., str]:
    """A dependency: the request's bearer token, if it holds one of `accepted`."""

    def require(state: StateDep, token: Annotated[str, Depends(bearer_token)]) -> str:
        check_scopes(state, token, accepted, what)
        return token

    return require


def project_with(*accepted: TokenScope, what: str) -> Callable[..., Project]:
    """A dependency: the project named by the route's `slug`, for a token holding one of `accepted`."""
    require = token_with(*accepted, what=what)

    # a default, not an annotation: annotations are strings here, and `require` is not a module name
    def project_from_slug(slug: str, session: SessionDep, _token: str = Depends(require)) -> Project:
        return get_project_by_slug(session, slug)

    return project_from_slug


READ = TokenScope.READ
DEPLOY = TokenScope.DEPLOY
ReadToken = Annotated[str, Depends(token_with(READ, what="read"))]
ReadProject = Annotated[Project, Depends(project_with(READ, what="read"))]
"""The native read API."""
DeployReadToken = Annotated[str, Depends(token_with(READ, DEPLOY, what="read releases and deploys"))]
DeployReadProject = Annotated[Project, Depends(project_with(READ, DEPLOY, what="read deploys and verdicts"))]
"""What a deploy job reads on its way (sentry-cli's release calls, the latest deploy, the verdict)."""
DeployToken = Annotated[str, Depends(token_with(DEPLOY, what="record releases, commits or deploys"))]
DeployProject = Annotated[Project, Depends(project_with(DEPLOY, what="record deploys"))]
IngestToken = Annotated[str, Depends(token_with(TokenScope.INGEST, what="upload source maps"))]
AdminProject = Annotated[
    Project, Depends(project_with(TokenScope.ADMIN, what="change anomalies or run a detection pass"))
]


def as_utc(value: datetime) -> datetime:
    """Query times in UTC, those without an offset taken as UTC (every stored time is UTC); a time outside
    the accepted range (`detector.times.utc_in_range`) is a validation error, so a 422 naming the parameter."""
    return utc_in_range(value, "time")


UtcTime = Annotated[datetime, AfterValidator(as_utc)]
