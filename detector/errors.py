"""Domain exceptions. `api/errors.py` is the one place that maps them to HTTP status codes."""

from __future__ import annotations


class DetectorError(Exception):
    """Base class: the message is meant for the person who sent the request or ran the command."""


class NotFound(DetectorError):
    """The named object (project, release, deploy, anomaly, event) does not exist."""


class Conflict(DetectorError):
    """The request contradicts stored state (a duplicate slug, a state change that is not allowed)."""


class InvalidInput(DetectorError):
    """The input is malformed or fails validation; nothing was stored."""


class PayloadTooLarge(DetectorError):
    """A body or item is over the configured size limits."""


class Unauthorized(DetectorError):
    """Credentials are missing or unknown (401)."""


class Forbidden(DetectorError):
    """Credentials are valid but not for this object (403)."""


class RateLimited(DetectorError):
    """The project's rate limit is exhausted, or (scope `organization`, every category) the intake queue is
    full; retry after `retry_after` seconds. `categories` and `scope` are those of `X-Sentry-Rate-Limits`."""

    def __init__(self, message: str, *, retry_after: int, categories: str = "error", scope: str = "project") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.categories = categories
        self.scope = scope


class DatabaseUnavailable(DetectorError):
    """The database cannot be used: a URL that leads to no usable database, or (with `retry_after`, in
    seconds) one that is restarting, unreachable, out of disk or locked for now, worth trying again."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
