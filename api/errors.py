"""The one place that maps domain exceptions to HTTP answers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from detector.errors import (
    Conflict,
    DatabaseUnavailable,
    DetectorError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
)
from detector.store.db import database_error_reason, is_transient_database_error

STATUS_BY_ERROR: list[tuple[type[DetectorError], int]] = [
    (InvalidInput, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (RateLimited, 429),
    (DatabaseUnavailable, 503),
]


def status_for(exc: DetectorError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(exc: DetectorError) -> JSONResponse:
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
        headers["X-Sentry-Rate-Limits"] = f"{exc.retry_after}:{exc.categories}:{exc.scope}"
    if isinstance(exc, DatabaseUnavailable) and exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


def database_unavailable(exc: DBAPIError, *, retry_after: int) -> DatabaseUnavailable | None:
    """The 503 a database failure deserves when it is the database's state (restarting, unreachable, out of
    disk, locked), not the request's; None for any other database error."""
    if not is_transient_database_error(exc):
        return None
    return DatabaseUnavailable(
        f"the database is unavailable, try again in {retry_after} s: {database_error_reason(exc)}",
        retry_after=retry_after,
    )


def validation_message(exc: RequestValidationError) -> str:
    """One readable sentence per problem, e.g. `query.since: Input should be a valid datetime`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DetectorError)
        return error_response(exc)

    async def handle_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # every error answers {"detail": "<sentence>"}; `errors` keeps the machine-readable list
        return JSONResponse(
            {"detail": validation_message(exc), "errors": jsonable_encoder(exc.errors())}, status_code=422
        )

    async def handle_database(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DBAPIError)
        unavailable = database_unavailable(
            exc, retry_after=request.app.state.detector.settings.database_retry_after_seconds
        )
        if unavailable is None:
            raise exc
        return error_response(unavailable)

    app.add_exception_handler(DetectorError, handle)
    app.add_exception_handler(DBAPIError, handle_database)
    app.add_exception_handler(RequestValidationError, handle_validation)
