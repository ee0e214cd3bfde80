"""Accepted intake requests answered in one write by uvicorn's httptools protocol (`_write_whole_answer`).

A real uvicorn server (httptools) runs `with_fast_intake(app)` in a thread; the raw bytes it answers are
compared with the bytes of the same server answering through uvicorn's own `send` (two writes)."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from api.app import create_app
from api.routes import intake
from api.routes.intake import with_fast_intake
from detector.config import Settings
from detector.store.models import Project
from tests.api.test_intake import envelope_url, event_envelope, minimal_event


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[int, Any]]:
    """(port, the FastIntake app) of a uvicorn server with the httptools protocol, as `detector serve` runs."""
    app = with_fast_intake(create_app(settings))
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http="httptools", log_level="warning", access_log=False)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port, app
    finally:
        uv.should_exit = True
        thread.join(timeout=20)


def _exchange(port: int, raw: bytes) -> bytes:
    """Send `raw` (one or more requests, the last closing the connection); everything answered, date masked."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return re.sub(rb"(?m)^date: [^\r]*\r$", b"date: X\r", b"".join(chunks))


def _request(path: str, body: bytes, *headers: str, version: str = "1.1", close: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1", f"Content-Length: {len(body)}", *headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _cases(project: Project) -> dict[str, bytes]:
    url = envelope_url(project)
    store = f"/api/{project.id}/store?sentry_key={project.public_key}"
    body = event_envelope(minimal_event("a" * 32))
    return {
        "closed": _request(url, body, close=True),
        "origin, closed": _request(url, body, "Origin: http://app.test", close=True),
        "kept alive, then more on the connection": _request(url, body, "Origin: http://app.test")
        + _request(url, event_envelope(minimal_event("b" * 32)))
        + _request(store, b'{"event_id": "' + b"c" * 32 + b'", "message": "m"}', close=True),
        "HTTP/1.0": _request(url, body, version="1.0"),
        "expect 100-continue": _request(url, body, "Expect: 100-continue", close=True),
        "no id": _request(url, b'{}\n{"type":"transaction"}\n{}', close=True),
        "refused, then accepted": _request(url, b"not an envelope") + _request(url, body, close=True),
    }


def _as_serve_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """`detector serve` runs uvicorn without an access log: the access logger has no handlers, and uvicorn
    then leaves `send` to us. pytest 9.2 attaches its log capture to that (non-propagating) logger at the
    start of each test's call, which uvicorn takes for an access log (and then answers through its own
    `send`). Called in the test's body, after pytest has attached it."""
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "handlers", [])


def test_answers_are_the_bytes_uvicorns_send_writes(
    server: tuple[int, Any], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_serve_logs(monkeypatch)
    port, app = server
    written: list[bool] = []
    whole = intake._write_whole_answer

    def spy(*args: Any) -> bool:
        written.append(whole(*args))
        return written[-1]

    monkeypatch.setattr(intake, "_write_whole_answer", spy)
    cases = _cases(project)
    whole_answers = {name: _exchange(port, raw) for name, raw in cases.items()}
    assert written and all(written), "every accepted request was answered in one write"
    for endpoint in app.endpoints.values():
        monkeypatch.setattr(endpoint, "whole_answers", False)
    written.clear()
    through_send = {name: _exchange(port, raw) for name, raw in cases.items()}
    assert not written
    assert whole_answers == through_send
    assert whole_answers["origin, closed"].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"access-control-allow-origin: *\r\n" in whole_answers["origin, closed"]
    assert whole_answers["kept alive, then more on the connection"].count(b"HTTP/1.1 200 OK\r\n") == 3
    assert whole_answers["closed"].endswith(b'connection: close\r\n\r\n{"id":"' + b"a" * 32 + b'"}')
    assert whole_answers["refused, then accepted"].startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_one_write_per_accepted_answer(
    server: tuple[int, Any], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_serve_logs(monkeypatch)
    port, _ = server
    writes: list[bytes] = []
    whole = intake._write_whole_answer

    def counting(send: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        transport = send.__self__.transport
        original = transport.write

        def write(data: bytes) -> None:
            writes.append(data)
            original(data)

        send.__self__.transport = _Writes(transport, write)
        try:
            return whole(send, headers, body)
        finally:
            send.__self__.transport = transport

    monkeypatch.setattr(intake, "_write_whole_answer", counting)
    answer = _exchange(port, _request(envelope_url(project), event_envelope(minimal_event("d" * 32)), close=True))
    assert len(writes) == 1
    assert re.sub(rb"(?m)^date: [^\r]*\r$", b"date: X\r", writes[0]) == answer


def test_other_senders_get_the_asgi_messages() -> None:
    async def send(_message: Any) -> None:
        raise AssertionError("not called")

    assert intake._write_whole_answer(send, [], b"{}") is False


class _Writes:
    """A transport whose `write` is replaced (everything else is the transport's)."""

    def __init__(self, transport: Any, write: Any) -> None:
        self._transport = transport
        self.write = write

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
