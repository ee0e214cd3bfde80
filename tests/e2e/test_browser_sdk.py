"""@sentry/browser 11 in headless Chromium → `detector serve` → signatures, events and sessions.

The incident app of fixtures/real-clients (`getEntitlements()` now returns an object, `PaidFeatures` still
calls `.map` on it) is bundled with esbuild, served on loopback and run in the system Chromium through
playwright-core (tests/e2e/js/drive.js). Everything it sends goes to a live server; the test then reads
back what was stored through the native API and the session tables.

Needs /usr/bin/chromium (or $DETECTOR_CHROMIUM), node, and `npm ci` in tests/e2e/js. Without them the
test is skipped on a developer machine and fails under CI (CI=true).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import ReadApi, SessionTable

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JS_DIR = Path(__file__).resolve().parent / "js"
CHROMIUM = Path(os.environ.get("DETECTOR_CHROMIUM", "/usr/bin/chromium"))
RELEASE = "web@1.2.0"
NEXT_RELEASE = "web@1.2.1"
ENVIRONMENT = "production"
MAP_TITLE = "TypeError: <x>.map is not a function"


def missing_prerequisite(reason: str) -> NoReturn:
    """Skip on a developer machine; fail under CI, where .ci/run must have installed everything."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI is set, so a missing prerequisite is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, once Chromium and the npm packages of tests/e2e/js are known to be there."""
    if not CHROMIUM.is_file():
        missing_prerequisite(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    node_bin = shutil.which("node")
    if node_bin is None:
        missing_prerequisite("node is not installed (apt-get install -y nodejs npm)")
    for package in ("@sentry/browser", "playwright-core", "esbuild"):
        if not (JS_DIR / "node_modules" / package / "package.json").is_file():
            missing_prerequisite(f"npm package {package} missing: run `npm ci` in {JS_DIR}")
    return node_bin


def bundle_app(out_dir: Path, *, dsn: str, release: str, environment: str, banner: str = "") -> None:
    """app.js (+ app.js.map) and index.html in `out_dir`, bundled and minified like the fixture's build.

    `banner` is code put before the bundle (to move every line and column, as the next build does).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    defines = {
        "__DETECTOR_DSN__": dsn,
        "__DETECTOR_RELEASE__": release,
        "__DETECTOR_ENVIRONMENT__": environment,
    }
    result = subprocess.run(
        [
            str(JS_DIR / "node_modules" / ".bin" / "esbuild"),
            str(JS_DIR / "app" / "main.js"),
            "--bundle",
            "--minify",
            "--sourcemap",
            f"--outfile={out_dir / 'app.js'}",
            *(f"--define:{name}={json.dumps(value)}" for name, value in defines.items()),
            *([f"--banner:js={banner}"] if banner else []),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"esbuild failed:\n{result.stderr}"
    shutil.copy(JS_DIR / "app" / "index.html", out_dir / "index.html")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """A static HTTP server for `root` on a free loopback port, in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="static-pages", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class BrowserRun:
    """What drive.js saw: one record per Sentry request (url, status, eventId, item types), and a summary."""

    requests: list[dict[str, Any]]
    summary: dict[str, Any]

    def event_ids(self) -> list[str]:
        return [r["eventId"] for r in self.requests if "event" in r["types"]]

    def session_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "session" in r["types"]]


def drive_page(node_bin: str, page_url: str, read_api: ReadApi, expected_events: int = 3) -> BrowserRun:
    """Load the page in headless Chromium, call window.run() and wait until the SDK has flushed."""
    result = subprocess.run(
        [node_bin, str(JS_DIR / "drive.js"), page_url, str(expected_events)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=JS_DIR,
        env={**os.environ, "DETECTOR_CHROMIUM": str(CHROMIUM)},
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0:
        pytest.fail(
            f"drive.js exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-3000:]}"
            f"\nserver log:\n{read_api.tail()}"
        )
    summaries = [line["summary"] for line in lines if "summary" in line]
    assert len(summaries) == 1, result.stdout
    return BrowserRun(requests=[line["request"] for line in lines if "request" in line], summary=summaries[0])


def run_app(node_bin: str, read_api: ReadApi, site: Path, *, dsn: str, release: str, banner: str = "") -> BrowserRun:
    """Bundle the incident app for `release` into `site`, serve it, and run it once in Chromium."""
    bundle_app(site, dsn=dsn, release=release, environment=ENVIRONMENT, banner=banner)
    with serve_directory(site) as base_url:
        return drive_page(node_bin, f"{base_url}/index.html", read_api)


def check_every_request_accepted(run: BrowserRun) -> None:
    # drive.js already exits non-zero on a non-2xx answer; this states what the SDK sent and how it was answered.
    assert run.summary == {"result": "ok", "events": 3, "requests": len(run.requests), "pending": 0}
    assert {r["status"] for r in run.requests} == {200}
    assert all("sentry_key=" in r["url"] and "sentry_version=7" in r["url"] for r in run.requests)
    assert len(set(run.event_ids())) == 3
    assert run.session_requests(), "release health: the SDK sends session updates"


def check_map_error_stored(event: dict[str, Any], signature: dict[str, Any]) -> None:
    assert event["exception"]["type"] == "TypeError"
    assert event["release"] == RELEASE
    assert event["environment"] == ENVIRONMENT
    assert event["platform"] == "javascript"
    assert event["browser"].startswith("Chrome ")
    assert event["os"] == "Linux"
    assert event["route"] == "/index.html"
    innermost = event["exception"]["frames"][-1]
    # Not symbolicated (no source map uploaded): a minified frame in the one long line of app.js.
    assert innermost["filename"].endswith("/app.js"), innermost
    assert innermost["lineno"] is not None and innermost["colno"] is not None
    assert signature["title"] == MAP_TITLE
    assert signature["type"] == "TypeError"
    assert signature["events"] == 1
    assert signature["users"] == 1
    assert signature["releases"] == [RELEASE]
    assert signature["first_release"] == RELEASE


def test_incident_app_in_chromium_is_stored_as_three_signatures_with_sessions(
    node: str, dsn: str, read_api: ReadApi, session_table: SessionTable, tmp_path: Path
) -> None:
    run = run_app(node, read_api, tmp_path / "site", dsn=dsn, release=RELEASE)
    check_every_request_accepted(run)

    events = read_api.wait_for_events(run.event_ids())
    signatures = read_api.wait_for_signatures(lambda sigs: sum(s["events"] for s in sigs) == 3)
    assert len(signatures) == 3
    assert {e["signature_id"] for e in events.values()} == {s["id"] for s in signatures}
    by_id = {s["id"]: s for s in signatures}

    (map_event,) = [e for e in events.values() if "map is not a function" in (e["exception"]["value"] or "")]
    check_map_error_stored(map_event, by_id[map_event["signature_id"]])

    # The two unhandled ones (a timer's null.foo, an unhandled rejection) are two other signatures.
    titles = sorted(s["title"] for s in signatures)
    assert len([t for t in titles if t.startswith("TypeError: ") and "reading 'foo'" in t]) == 1, titles
    assert len([t for t in titles if t.startswith("Error: Failed to fetch /api/billing/plan")]) == 1, titles
    for sig in signatures:
        assert sig["events"] == 1 and sig["users"] == 1 and sig["releases"] == [RELEASE], sig

    assert {s["id"] for s in read_api.signatures(release=RELEASE, environment=ENVIRONMENT)} == set(by_id)
    assert read_api.signatures(release="web@0.0.0") == []

    # One page load is one session: started "ok", then errors=1, then status "unhandled" after null.foo.
    # As in relay, "unhandled" is an errored session, not a crashed one (nothing was fatal).
    assert len(run.session_requests()) >= 2
    expected = {"started": 1, "errored": 1, "crashed": 0}
    assert session_table.wait_for_totals(expected, release=RELEASE, environment=ENVIRONMENT) == expected


def test_the_next_build_of_the_same_bug_joins_its_signature(
    node: str, dsn: str, read_api: ReadApi, session_table: SessionTable, tmp_path: Path
) -> None:
    first = run_app(node, read_api, tmp_path / "v1", dsn=dsn, release=RELEASE)
    # The next release's bundle starts with a few more lines, so every frame's line number moves.
    second = run_app(
        node, read_api, tmp_path / "v2", dsn=dsn, release=NEXT_RELEASE, banner="var buildInfo = {n: 2};\n\n"
    )
    events = read_api.wait_for_events(first.event_ids() + second.event_ids())
    signatures = read_api.wait_for_signatures(lambda sigs: sum(s["events"] for s in sigs) == 6)

    def innermost_line(release: str) -> int:
        (event,) = [
            e
            for e in events.values()
            if e["release"] == release and "map is not a function" in (e["exception"]["value"] or "")
        ]
        return int(event["exception"]["frames"][-1]["lineno"])

    assert innermost_line(NEXT_RELEASE) > innermost_line(RELEASE)
    assert len(signatures) == 3, [s["title"] for s in signatures]
    (map_signature,) = [s for s in signatures if s["title"] == MAP_TITLE]
    assert map_signature["events"] == 2
    assert map_signature["releases"] == [RELEASE, NEXT_RELEASE]
    assert map_signature["first_release"] == RELEASE
    (in_next,) = [s for s in read_api.signatures(release=NEXT_RELEASE) if s["id"] == map_signature["id"]]
    assert in_next["events"] == 1
    expected = {"started": 1, "errored": 1, "crashed": 0}
    for release in (RELEASE, NEXT_RELEASE):
        assert session_table.wait_for_totals(expected, release=release, environment=ENVIRONMENT) == expected
