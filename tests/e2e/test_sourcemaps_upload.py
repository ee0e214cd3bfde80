"""The real `sentry-cli sourcemaps upload` → `detector serve` → a minified browser event read in original source.

The fixture bundle (`browser-app.min.js` + its map, as `app.js` and `app.js.map`) is uploaded with
sentry-cli 3 through chunk-upload and artifact-bundle assembly; then the real @sentry/browser event of
the incident (frames at `http://127.0.0.1:9913/app.js:15:33436`, function `Pl`) is posted gzip-compressed
to the envelope endpoint, and the stored event must read in `src/features/PaidFeatures.js`.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.config import Settings
from detector.store.models import ArtifactBundle, ArtifactFile, Project, UploadChunk

if TYPE_CHECKING:
    from tests.conftest import LiveServer
    from tests.e2e.conftest import ReadApi

pytestmark = [pytest.mark.slow]

RELEASE = "web@1.2.0"


@pytest.fixture
def sentry_cli() -> str:
    binary = shutil.which("sentry-cli")
    if binary is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("sentry-cli is not installed (pip install sentry-cli)")
        pytest.skip("sentry-cli is not installed (pip install sentry-cli)")
    return binary


@pytest.fixture
def dist_dir(tmp_path: Path, fixtures_dir: Path) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    real = fixtures_dir / "real-clients"
    shutil.copy(real / "browser-app.min.js", dist / "app.js")
    shutil.copy(real / "browser-app.min.js.map", dist / "app.js.map")
    return dist


def run_sentry_cli(
    binary: str, server: LiveServer, token: str, org: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")},
        "SENTRY_URL": server.url + "/",
        "SENTRY_AUTH_TOKEN": token,
        "SENTRY_ORG": org,
        "SENTRY_PROJECT": "web",
        "SENTRY_LOG_LEVEL": "warn",
    }
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=120)


def post_envelope(server: LiveServer, project: Project, raw: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/{project.id}/envelope/",
        content=gzip.compress(raw),
        params={"sentry_key": project.public_key, "sentry_version": "7"},
        headers={"Content-Type": "text/plain;charset=UTF-8", "Content-Encoding": "gzip"},
        timeout=10,
    )


def test_sentry_cli_upload_then_minified_event_reads_in_original_source(
    live_server: LiveServer,
    sentry_cli: str,
    dist_dir: Path,
    token: str,
    project: Project,
    settings: Settings,
    factory: sessionmaker[Session],
    read_api: ReadApi,
    fixtures_dir: Path,
) -> None:
    upload = run_sentry_cli(
        sentry_cli, live_server, token, settings.org, "sourcemaps", "upload", "--release", RELEASE, str(dist_dir)
    )
    assert upload.returncode == 0, f"{upload.stdout}\n{upload.stderr}\n{read_api.tail()}"

    with factory() as session:
        bundles = session.scalars(select(ArtifactBundle)).all()
        files = {f.url: f for f in session.scalars(select(ArtifactFile))}
        leftover_chunks = session.scalar(select(func.count()).select_from(UploadChunk))
    assert [b.release for b in bundles] == [RELEASE]
    assert files["~/app.js"].file_type == "minified_source"
    assert files["~/app.js"].sourcemap == "app.js.map"
    assert files["~/app.js.map"].file_type == "source_map"
    assert leftover_chunks == 0

    raw = (fixtures_dir / "real-clients" / "browser-03-event.envelope").read_bytes()
    event_id = json.loads(raw.split(b"\n")[2])["event_id"]
    assert post_envelope(live_server, project, raw).status_code == 200

    stored = read_api.wait_for_events([event_id])[event_id]
    frames = stored["exception"]["frames"]
    top = next(f for f in reversed(frames) if f["in_app"])
    assert top["filename"] == "src/features/PaidFeatures.js"
    assert top["lineno"] == 4
    assert top["function"] == "renderPaidFeatures"
    assert "entitlements.map" in top["context_line"]
    caller = frames[-2]
    assert caller["filename"] == "src/main.js"
    assert caller["lineno"] == 5
    # the frame without a URL (`<anonymous>`) is kept as the SDK sent it
    assert frames[0]["filename"] == "<anonymous>"
    assert frames[0]["lineno"] == 381

    # a second upload of the same files is answered from what is stored, and changes nothing
    again = run_sentry_cli(
        sentry_cli, live_server, token, settings.org, "sourcemaps", "upload", "--release", RELEASE, str(dist_dir)
    )
    assert again.returncode == 0, again.stderr
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(ArtifactBundle)) == 1


def test_sentry_cli_upload_to_unknown_org_fails(
    live_server: LiveServer, sentry_cli: str, dist_dir: Path, token: str
) -> None:
    result = run_sentry_cli(
        sentry_cli, live_server, token, "no-such-org", "sourcemaps", "upload", "--release", RELEASE, str(dist_dir)
    )
    assert result.returncode != 0
    # sentry-cli turns our 404 into its own message
    assert "organization not found" in result.stderr
