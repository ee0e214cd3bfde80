"""FastAPI dependencies as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from sqlalchemy.orm import Session

from api.state import AppState
from detector.errors import Unauthorized
from detector.store.models import Project
from detector.store.projects import get_project_by_slug
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


def require_token(state: StateDep, token: Annotated[str, Depends(bearer_token)]) -> str:
    if not state.tokens.is_valid(token):
        raise Unauthorized("unknown API token")
    return token


TokenDep = Annotated[str, Depends(require_token)]


def project_from_slug(slug: str, session: SessionDep, _token: TokenDep) -> Project:
    return get_project_by_slug(session, slug)


ProjectDep = Annotated[Project, Depends(project_from_slug)]


def as_utc(value: datetime) -> datetime:
    """Query times in UTC, those without an offset taken as UTC (every stored time is UTC); a time outside
    the accepted range (`detector.times.utc_in_range`) is a validation error, so a 422 naming the parameter."""
    return utc_in_range(value, "time")


UtcTime = Annotated[datetime, AfterValidator(as_utc)]
