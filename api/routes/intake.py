"""Sentry's intake protocol: `POST /api/{project_id}/envelope/` and `/store/`, as relay answers it.

Intake is the hot path (one request per browser error), so it is a plain ASGI endpoint rather than a
FastAPI route: no dependency resolution, no request object, one JSON answer built by hand. The same
endpoint serves two ways:

- inside the app, as routes of `router` (behind the app's middleware and error handlers);
- in front of the app, through `with_fast_intake(app)`, which `detector serve` uses: intake requests
  skip the middleware stack. Either way the endpoint itself answers CORS (`api.cors`, the allowed
  origins of `DETECTOR_CORS_ALLOWED_ORIGINS`), the only routes that do. There, an
  accepted request's answer goes out in one write to the connection when uvicorn's httptools protocol
  serves it (`_write_whole_answer`), the bytes uvicorn would have written in two.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

try:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as _HttpToolsCycle
except ImportError:  # pragma: no cover - uvicorn without httptools: answers go through `send`
    _HttpToolsCycle = None

from sqlalchemy.exc import DBAPIError

from api.cors import IntakeCors
from api.errors import database_unavailable, error_response, status_for
from api.state import AppState
from detector.config import Settings
from detector.errors import DetectorError, PayloadTooLarge
from detector.intake.accept import Accepted, IntakeLimits, accept_envelope, accept_store, decode_request_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Accept = Callable[..., Accepted]

INTAKE_PATH = re.compile(r"^/api/(\d+)/(envelope|store)/?$")
"""The intake URLs, with and without the trailing slash SDKs differ on."""

_JSON = (b"content-type", b"application/json")


class _Disconnected(Exception):
    """The client went away before sending its whole body: there is nobody to answer."""


async def read_bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes (before reading the rest)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_body(receive: Receive, limit: int, declared: bytes | None) -> bytes:
    """`read_bounded_body` on the raw ASGI messages (raises _Disconnected if the client went away)."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared.decode()} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_NO_QUERY: Mapping[str, str] = MappingProxyType({})


@lru_cache(maxsize=1024)  # an SDK sends the same query string (its key, its version) with every request
def _query(query_string: bytes) -> Mapping[str, str]:
    if not query_string:
        return _NO_QUERY
    return MappingProxyType(dict(parse_qsl(query_string.decode("latin-1"))))


def _limits(settings: Settings) -> IntakeLimits:
    return IntakeLimits(
        max_body_bytes=settings.max_envelope_bytes,
        max_decoded_bytes=settings.max_decoded_bytes,
        max_event_bytes=settings.max_event_bytes,
        max_items=settings.max_items_per_envelope,
        max_event_age_seconds=settings.max_event_age_days * 86400,
    )


class IntakeEndpoint:
    """The ASGI endpoint for one intake URL kind (`accept_envelope` or `accept_store`)."""

    def __init__(self, accept: Accept, *, whole_answers: bool = False) -> None:
        self.accept = accept
        self.whole_answers = whole_answers
        """Answer accepted requests in one write when `send` is uvicorn's own (`_write_whole_answer`)."""
        # The limits and CORS policy of the last settings seen: built once, not per request.
        self._limits: tuple[Settings, IntakeLimits, IntakeCors] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        project_id = scope.get("path_params", {}).get("project_id")
        if project_id is None:
            match = INTAKE_PATH.match(scope["path"])
            assert match is not None, "the endpoint is only routed intake URLs"
            project_id = int(match.group(1))
        state: AppState = scope["app"].state.detector
        await self.handle(state, int(project_id), scope, receive, send)

    async def handle(self, state: AppState, project_id: int, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        settings = state.settings
        cached = self._limits
        if cached is not None and cached[0] is settings:
            limits, cors = cached[1], cached[2]
        else:
            limits, cors = _limits(settings), intake_cors(settings)
            self._limits = (settings, limits, cors)
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        by_name = dict(headers)
        if len(by_name) < len(headers):  # a repeated header: the first one counts, as a scan of the list finds it
            by_name = {name: value for name, value in reversed(headers)}
        origin = by_name.get(b"origin")
        try:
            cors.check(origin)
            limit = limits.max_body_bytes
            declared = by_name.get(b"content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                body = await _read_body(receive, limit, declared)  # refuses it before reading any of it
            else:
                message = await receive()
                # One message holding the whole body is what keep-alive clients send; anything else
                # (chunks, a disconnect, a body over the limit) takes the general path.
                body = message.get("body", b"")
                if message["type"] != "http.request" or message.get("more_body", False) or len(body) > limit:
                    body = await _read_body(_replay(message, receive), limit, declared)
            received_at = datetime.now(UTC)
            encoding = by_name.get(b"content-encoding")
            decoded = bool(encoding) and encoding.strip().lower() != b"identity"
            if decoded:
                # inflating is CPU work of up to max_decoded_bytes: in a thread, so other requests go on
                body = await run_in_threadpool(decode_request_body, body, encoding.decode("latin-1"), limits)
            auth = by_name.get(b"x-sentry-auth")
            accepted = self.accept(
                project_id=project_id,
                body=body,
                content_encoding=encoding.decode("latin-1") if encoding else None,
                decoded=decoded,
                query=_query(scope.get("query_string", b"")),
                auth_header=auth.decode("latin-1") if auth else None,
                lookup=state.keys.get,
                limits=limits,
            )
            items = accepted.items
            errors = 0
            for item in items:
                if item.item_type == "event":
                    errors += 1
            payload_bytes = 0
            for item in items:
                payload_bytes += len(item.payload)
            # the queue's bound before the project's limit: a request refused for a full queue uses no quota
            state.queue_bound.take(len(items), payload_bytes)
            try:
                if errors and state.limiter.limit_for(accepted.key) > 0:
                    # a database write (the count all API processes share): off the event loop
                    await run_in_threadpool(state.limiter.take, accepted.key, errors, received_at)
                await state.writer.write(
                    [
                        {
                            "project_id": accepted.project_id,
                            "item_type": item.item_type,
                            "event_id": item.event_id,
                            "received_at": received_at,
                            "payload": item.payload,
                        }
                        for item in items
                    ]
                )
            except Exception:
                state.queue_bound.finish(len(items), payload_bytes, queued=False)
                raise
            except BaseException:  # cancelled while its commit runs, which may still store the rows
                state.queue_bound.finish(len(items), payload_bytes, queued=True)
                raise
            state.queue_bound.finish(len(items), payload_bytes, queued=True)
        except _Disconnected:
            return
        except (DetectorError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError):
                # the database restarting or out of disk: 503 with Retry-After, which SDKs wait out
                unavailable = database_unavailable(exc, retry_after=settings.database_retry_after_seconds)
                if unavailable is None:
                    raise
                exc = unavailable
            state.metrics.intake_rejected_of(str(status_for(exc))).inc()
            response = error_response(exc)
            if origin is not None and cors.allows(origin):  # a page it may read the reason, not others
                response.raw_headers.extend(cors.headers(origin))
            await response(scope, receive, send)
            return
        metrics = state.metrics
        for item in items:
            metrics.intake_items_of(item.item_type).inc()
        metrics.intake_latency.observe(time.perf_counter() - started)
        event_id = accepted.event_id
        answer = _ANSWER_NO_ID if not event_id else _answer(orjson.dumps({"id": event_id}))
        if origin is not None:
            answer = (answer[0] + cors.headers(origin), answer[1])
        if self.whole_answers and _write_whole_answer(send, answer[0], answer[1]):
            return
        await send({"type": "http.response.start", "status": 200, "headers": answer[0]})
        await send({"type": "http.response.body", "body": answer[1]})


def _answer(body: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    return [_JSON, (b"content-length", str(len(body)).encode())], body


_ANSWER_NO_ID = _answer(b"{}")

_STATUS_200 = b"HTTP/1.1 200 OK\r\n"
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})
_default_head: tuple[object, bytes | None] = (None, None)
"""uvicorn's default headers (its `date` changes every second) as the bytes of their header lines, for
the last list seen; None when one of them is a framing header (then answers go through `send`)."""


def _default_header_lines(default_headers: list[tuple[bytes, bytes]]) -> bytes | None:
    global _default_head
    seen, lines = _default_head
    if seen is default_headers:
        return lines
    parts: list[bytes] = []
    for name, value in default_headers:
        name = name.lower()
        if name in _FRAMING_HEADERS:
            lines = None
            break
        parts += (name, b": ", value, b"\r\n")
    else:
        lines = b"".join(parts)
    _default_head = (default_headers, lines)
    return lines


def _write_whole_answer(send: Send, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """A 200 answer (`headers` must hold its content-length) in one write, when `send` is the `send` of
    uvicorn's httptools protocol in its plain state; False, having done nothing, otherwise.

    uvicorn writes the status line and headers, then the body, with two writes (two `send` system calls
    and two loopback segments for the client to read): one write saves ~10 us of CPU per request in the
    server and ~4 in the client (measured on a no-op app, 20,000 requests over 64 keep-alive connections:
    20-24 us against 31-38). The bytes are those uvicorn writes (status line, its default headers
    lower-cased, ours, `connection: close` when the connection is not kept alive, the body), and the
    cycle's state ends as its `send` leaves it. Anything unusual (another server or protocol, access log
    on, output paused, a disconnect, a framing header among the defaults) takes uvicorn's `send`."""
    cycle = getattr(send, "__self__", None)
    if _HttpToolsCycle is None or type(cycle) is not _HttpToolsCycle:
        return False
    if cycle.response_started or cycle.disconnected or cycle.access_log or cycle.flow.write_paused:
        return False
    defaults = _default_header_lines(cycle.default_headers)
    if defaults is None:
        return False
    parts = [_STATUS_200, defaults]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    keep_alive = cycle.keep_alive
    parts.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
    parts.append(body)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.transport.write(b"".join(parts))
    cycle.response_complete = True
    cycle.message_event.set()
    if not keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True


def _replay(first: Message, receive: Receive) -> Receive:
    """`receive`, with `first` (already received) given back first."""
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def intake_cors(settings: Settings) -> IntakeCors:
    return IntakeCors.from_origins(settings.cors_allowed_origins)


class Preflight:
    """ASGI endpoint for `OPTIONS` on an intake URL: the browser's CORS preflight, answered by the intake's
    policy (an object, not a function, so Starlette routes it as an ASGI app)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState = scope["app"].state.detector
        await intake_cors(state.settings).preflight(scope, send)


preflight = Preflight()


envelope = IntakeEndpoint(accept_envelope)
store = IntakeEndpoint(accept_store)

router = APIRouter(tags=["intake"])
router.routes.extend(
    Route(f"/api/{{project_id:int}}/{kind}{slash}", endpoint, methods=["POST"], include_in_schema=False)
    for kind, endpoint in (("envelope", envelope), ("store", store))
    for slash in ("/", "")
)
router.routes.extend(
    Route(f"/api/{{project_id:int}}/{kind}{slash}", preflight, methods=["OPTIONS"], include_in_schema=False)
    for kind in ("envelope", "store")
    for slash in ("/", "")
)


class FastIntake:
    """ASGI app: intake requests straight to the intake endpoint, everything else to `rest`.

    `app` is the app `api.app.create_app` built (its state holds what intake needs); `rest` is what
    answers every other request, `app` itself or `app` behind more middleware. Answers exactly as the
    routes inside `app` do, CORS headers included; preflight `OPTIONS`
    requests still go to `rest`.
    """

    def __init__(self, app: Any, rest: ASGIApp | None = None) -> None:
        self.app = app
        self.rest: ASGIApp = app if rest is None else rest
        self.endpoints = {
            "envelope": IntakeEndpoint(accept_envelope, whole_answers=True),
            "store": IntakeEndpoint(accept_store, whole_answers=True),
        }
        self._state: AppState | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = INTAKE_PATH.match(scope["path"])
            if match is not None:
                state = self._state
                if state is None:  # set by create_app, never replaced: looked up once
                    state = self._state = self.app.state.detector
                endpoint = self.endpoints[match.group(2)]
                await endpoint.handle(state, int(match.group(1)), scope, receive, send)
                return
        await self.rest(scope, receive, send)


def with_fast_intake(app: Any, rest: ASGIApp | None = None) -> FastIntake:
    """`app` (built by `api.app.create_app`) with intake requests answered before its middleware.

    Every other request goes to `rest` (default: `app`)."""
    return FastIntake(app, rest)
