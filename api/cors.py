"""CORS for the intake routes only (the browser SDK posts events from the app's pages); the query API has
none, so no other site's page can read it with a visitor's credentials.

`DETECTOR_CORS_ALLOWED_ORIGINS` lists the origins whose pages may send events (`*`: any). As relay does
with a project's allowed domains, an intake request from another origin is refused with 403; a request
without an `Origin` header (a server-side SDK, curl) is not a browser's and is not checked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from detector.errors import Forbidden

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

EXPOSED = (b"access-control-expose-headers", b"Retry-After, X-Sentry-Rate-Limits")
PREFLIGHT_MAX_AGE = b"3600"


@dataclass(frozen=True)
class IntakeCors:
    """Which origins may post to intake, and the headers their answers carry."""

    any_origin: bool
    origins: frozenset[bytes]

    @classmethod
    def from_origins(cls, origins: list[str]) -> IntakeCors:
        return cls(any_origin="*" in origins, origins=frozenset(o.encode("latin-1") for o in origins if o != "*"))

    def allows(self, origin: bytes) -> bool:
        return self.any_origin or origin in self.origins

    def check(self, origin: bytes | None) -> None:
        """Forbidden for a browser page of an origin that is not allowed."""
        if origin is None or self.allows(origin):
            return
        shown = origin.decode("latin-1")[:200]
        raise Forbidden(f"events from pages of {shown} are not allowed: it is not in DETECTOR_CORS_ALLOWED_ORIGINS")

    def headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        """The CORS headers of an answer to an allowed `origin`."""
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*"), EXPOSED]
        return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"), EXPOSED]

    async def preflight(self, scope: Scope, send: Send) -> None:
        """The answer to an `OPTIONS` preflight of an intake URL: 200 with the CORS headers for an allowed
        origin, 403 without them otherwise (the browser then does not send the POST)."""
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        allowed = origin is not None and self.allows(origin)
        answer: list[tuple[bytes, bytes]] = [(b"content-length", b"0")]
        if allowed and origin is not None:
            answer += self.headers(origin)
            answer += [
                (b"access-control-allow-methods", b"POST, OPTIONS"),
                (b"access-control-allow-headers", headers.get(b"access-control-request-headers", b"*")),
                (b"access-control-max-age", PREFLIGHT_MAX_AGE),
            ]
        await send({"type": "http.response.start", "status": 200 if allowed else 403, "headers": answer})
        await send({"type": "http.response.body", "body": b""})
