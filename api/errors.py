"""The one place that maps domain exceptions to HTTP answers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

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
        headers["X-Sentry-Rate-Limits"] = f"{exc.retry_after}:{exc.categories}:project"
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


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

    app.add_exception_handler(DetectorError, handle)
    app.add_exception_handler(RequestValidationError, handle_validation)
