"""Helpers for the source-map tests: artifact bundles built the way sentry-cli builds them."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from detector.config import Settings


@dataclass
class BundleBuilder:
    """An artifact bundle zip: `manifest.json` plus files under `files/_/_/`, as sentry-cli writes it."""

    release: str | None = "web@1.2.0"
    files: dict[str, tuple[bytes, dict[str, Any]]] = field(default_factory=dict)
    manifest_override: bytes | None = None
    include_manifest: bool = True

    def add(self, url: str, content: bytes, file_type: str, headers: dict[str, str] | None = None) -> BundleBuilder:
        path = "files/_/_/" + url.removeprefix("~/")
        entry: dict[str, Any] = {"type": file_type, "url": url}
        if headers:
            entry["headers"] = headers
        self.files[path] = (content, entry)
        return self

    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = {
            "files": {path: entry for path, (_content, entry) in self.files.items()},
            "org": "default",
            "project": "web",
        }
        if self.release:
            manifest["release"] = self.release
        return manifest

    def build(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            if self.include_manifest:
                archive.writestr("manifest.json", self.manifest_override or json.dumps(self.manifest()))
            for path, (content, _entry) in self.files.items():
                archive.writestr(path, content)
        return buffer.getvalue()


@pytest.fixture(scope="session")
def app_js(fixtures_dir: Path) -> bytes:
    return (fixtures_dir / "real-clients" / "browser-app.min.js").read_bytes()


@pytest.fixture(scope="session")
def app_js_map(fixtures_dir: Path) -> bytes:
    return (fixtures_dir / "real-clients" / "browser-app.min.js.map").read_bytes()


@pytest.fixture
def fixture_bundle(app_js: bytes, app_js_map: bytes) -> BundleBuilder:
    """The fixture app as `sentry-cli sourcemaps upload --release web@1.2.0` bundles it."""
    return (
        BundleBuilder()
        .add("~/app.js", app_js, "minified_source", {"sourcemap": "app.js.map"})
        .add("~/app.js.map", app_js_map, "source_map")
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()
