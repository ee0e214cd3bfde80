"""The HTTP/1.1 protocol `detector serve` runs: uvicorn's httptools protocol with bounds on what a client may
make it hold and for how long.

uvicorn bounds none of these on its httptools protocol (`h11_max_incomplete_event_size` is for h11 only, and
`timeout_keep_alive` only runs between requests): a connection that sends nothing, or one byte a second
(slowloris), is held forever, and a request head of any size is buffered. Here:

- a connection that sends nothing is closed after `timeout_keep_alive` seconds, as an idle keep-alive is;
- a request head (request line and headers) over `max_header_bytes` is answered 431 and the connection
  closed, before the app sees it;
- a head not complete `header_timeout` seconds after its first byte is answered 408 and closed;
- a body not complete `body_timeout` seconds after its head is answered 408 (when no answer has started)
  and closed; the app's `receive()` then reports a disconnect, so the route stops waiting.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 60.0


def _plain_answer(status: bytes, message: str) -> bytes:
    body = message.encode()
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with `limits` (set by `guarded_http_protocol`)."""

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = False
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a response: a connection that never sends is idle too
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head or self.cycle is None or self.cycle.response_complete:
            # bytes of a head (or of the next one): counted before the parser buffers them
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(b"431 Request Header Fields Too Large", "request head over the limit of "
                         f"{self.limits.max_header_bytes} bytes")  # fmt: skip

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._arm(self.limits.header_timeout, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        self._head_bytes = 0
        if size > self.limits.max_header_bytes:
            self._cancel_deadline()
            self._refuse(b"431 Request Header Fields Too Large", f"request head of {size} bytes is over the limit of "
                         f"{self.limits.max_header_bytes}")  # fmt: skip
            return
        self._arm(self.limits.body_timeout, self._body_too_slow)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:  # a refused head has no cycle: what the parser still reads of its body is dropped
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        if not self._refused:
            super().on_message_complete()

    def _arm(self, seconds: float, callback: Any) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, callback)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, status: bytes, message: str) -> None:
        self._refused = True
        log.warning("closing connection from %s: %s", self.client, message)
        if not self.transport.is_closing():
            self.transport.write(_plain_answer(status, message))
            self.transport.close()

    def _head_too_slow(self) -> None:
        self._deadline = None
        if self._in_head:
            self._refuse(b"408 Request Timeout", f"request head not received within {self.limits.header_timeout:g} s")

    def _body_too_slow(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_complete:
            return
        message = f"request body not received within {self.limits.body_timeout:g} s"
        if cycle.response_started:
            self._refused = True
            log.warning("closing connection from %s: %s", self.client, message)
            self.transport.close()
        else:
            self._refuse(b"408 Request Timeout", message)
        # the route waiting in receive() gets a disconnect, and whatever it sends is dropped
        cycle.disconnected = True
        cycle.message_event.set()


def guarded_http_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class to give `uvicorn.Config(http=...)`, bounded by `limits`."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
