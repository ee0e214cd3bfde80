"""No unbounded work before the checks (issue 18, item 4), against `detector serve` on loopback: bodies are
refused while they stream, a zip bomb is refused before it inflates, request heads are capped, and slow
clients are cut off. The memory tests read the serving process's RSS while the request runs."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from detector.sources.github import signature_for
from detector.store.models import Project
from tests.conftest import LiveServer
from tests.sourcemaps.conftest import sha1

MiB = 1024 * 1024
RSS_GROWTH_BOUND = 64 * MiB
"""What a refused 200 MiB body or a zip bomb may add to the server's resident memory at its peak."""
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0


@pytest.fixture
def server(database_url: str, tmp_path: Path, project: Project, token: str) -> Iterator[LiveServer]:
    env = {
        "DETECTOR_REQUEST_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "DETECTOR_REQUEST_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "DETECTOR_ORG": project.org,
    }
    live = LiveServer(database_url, tmp_path, extra_env=env).start()
    yield live
    live.stop()


class PeakRss:
    """The largest resident set size of a process, sampled every few milliseconds while in the block."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def assert_still_serving(server: LiveServer, auth: dict[str, str]) -> None:
    assert httpx.get(f"{server.url}/api/v1/projects", headers=auth, timeout=10).status_code == 200


def megabytes(count: int) -> Iterator[bytes]:
    piece = b"x" * MiB
    for _ in range(count):
        yield piece


def test_a_200_mib_webhook_body_is_refused_while_it_streams_or_before(
    server: LiveServer, project: Project, auth: dict[str, str]
) -> None:
    assert server.proc is not None
    url = f"{server.url}/api/v1/webhooks/github?project={project.slug}"
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": signature_for(project.github_secret or "", b"")}
    with PeakRss(server.proc.pid) as rss:
        # chunked, so no Content-Length tells the server the size in advance
        answer = httpx.post(url, content=megabytes(200), headers=headers, timeout=60)
    assert answer.status_code == 413, answer.text
    assert "over the limit" in answer.json()["detail"]
    assert rss.growth < RSS_GROWTH_BOUND, f"RSS grew {rss.growth / MiB:.0f} MiB"
    print(f"webhook 200 MiB: RSS +{rss.growth / MiB:.1f} MiB")
    # declared: refused on its Content-Length, before any of it is sent
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(
            f"POST /api/v1/webhooks/github?project={project.slug} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {200 * MiB}\r\nX-GitHub-Event: push\r\n\r\n".encode()
        )
        head = conn.recv(65536)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert_still_serving(server, auth)


def zip_bomb(inflated: int) -> bytes:
    """An artifact bundle whose source map is `inflated` bytes of zeros, deflated a thousand times over."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        manifest = b'{"files": {"files/_/_/app.js.map": {"type": "source_map", "url": "~/app.js.map"}}}'
        archive.writestr("manifest.json", manifest)
        with archive.open("files/_/_/app.js.map", "w", force_zip64=True) as member:
            zeros = bytes(MiB)
            for _ in range(inflated // MiB):
                member.write(zeros)
    return out.getvalue()


def test_a_zip_bomb_bundle_is_refused_without_inflating_it(
    server: LiveServer, project: Project, auth: dict[str, str]
) -> None:
    assert server.proc is not None
    bundle = zip_bomb(400 * MiB)
    assert len(bundle) < 1 * MiB  # one chunk
    base = f"{server.url}/api/0/organizations/{project.org}"
    uploaded = httpx.post(
        f"{base}/chunk-upload/",
        files=[("file", (sha1(bundle), bundle, "application/octet-stream"))],
        headers=auth,
        timeout=30,
    )
    assert uploaded.status_code == 200, uploaded.text
    request = {"checksum": sha1(bundle), "chunks": [sha1(bundle)], "projects": [project.slug]}
    with PeakRss(server.proc.pid) as rss:
        answer = httpx.post(f"{base}/artifactbundle/assemble/", json=request, headers=auth, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "error" and "zip bomb" in answer.json()["detail"], answer.json()
    assert rss.growth < RSS_GROWTH_BOUND, f"RSS grew {rss.growth / MiB:.0f} MiB"
    print(f"zip bomb of 400 MiB: RSS +{rss.growth / MiB:.1f} MiB")
    assert_still_serving(server, auth)


def read_answer(conn: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    conn.settimeout(within)
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received, time.monotonic() - started


def test_slow_clients_are_cut_off(server: LiveServer, project: Project, auth: dict[str, str]) -> None:
    head_sent_slowly(server)
    body_sent_slowly(server, project)
    nothing_sent(server)
    assert_still_serving(server, auth)


def head_sent_slowly(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        try:
            for byte in b"X-Slow: " + b"a" * 100:
                conn.sendall(bytes([byte]))
                time.sleep(0.2)
        except OSError:
            closed = True
        answer, _ = read_answer(conn, within=5) if not closed else (b"", 0.0)
        elapsed = time.monotonic() - started
    assert closed or answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < HEADER_TIMEOUT + 2, f"the connection stayed open {elapsed:.1f} s"


def body_sent_slowly(server: LiveServer, project: Project) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(
            f"POST /api/{project.id}/envelope/?sentry_key={project.public_key} HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
        )
        started = time.monotonic()
        answer = b""
        try:
            for _ in range(100):
                conn.sendall(b"{")
                time.sleep(0.2)
                conn.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    answer += conn.recv(65536)
                conn.setblocking(True)
                if answer:
                    break
        except OSError:
            pass
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < BODY_TIMEOUT + 2, f"the connection stayed open {elapsed:.1f} s"


def nothing_sent(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        answer, elapsed = read_answer(conn, within=15)
    assert answer == b""
    assert elapsed < 5 + 2  # uvicorn's keep-alive timeout (5 s), now also before the first request


def test_request_heads_over_the_limit_are_431(server: LiveServer, auth: dict[str, str]) -> None:
    for headers in ({"X-Big": "a" * 100_000}, {f"X-Many-{n}": "a" * 100 for n in range(1000)}):
        head = "GET /healthz HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            with contextlib.suppress(OSError):  # the server may close before reading it all; its answer is there
                conn.sendall(head.encode())
            answer, _ = read_answer(conn, within=5)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        assert b"over the limit of 65536" in answer
    # within the limit: served
    assert httpx.get(f"{server.url}/healthz", headers={"X-Big": "a" * 30_000}, timeout=10).status_code == 200
    assert_still_serving(server, auth)
