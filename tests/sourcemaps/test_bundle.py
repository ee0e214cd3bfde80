from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from detector.sourcemaps.bundle import InvalidBundle, parse_bundle, read_bundle_file
from tests.sourcemaps.conftest import BundleBuilder

LIMIT = 64 * 1024 * 1024


def test_the_fixture_bundle_lists_its_files_with_urls_types_and_headers(
    fixture_bundle: BundleBuilder, fixtures_dir: Path, app_js_map: bytes
) -> None:
    real_manifest = json.loads((fixtures_dir / "real-clients" / "sentry-cli-artifact-bundle.manifest.json").read_text())
    fixture_bundle.manifest_override = json.dumps(real_manifest).encode()
    data = fixture_bundle.build()
    bundle = parse_bundle(data, max_uncompressed=LIMIT)
    by_url = {f.url: f for f in bundle.files}
    assert set(by_url) == {"~/app.js", "~/app.js.map"}
    assert by_url["~/app.js"].file_type == "minified_source"
    assert by_url["~/app.js"].sourcemap == "app.js.map"
    assert by_url["~/app.js.map"].file_type == "source_map"
    assert by_url["~/app.js"].path == "files/_/_/app.js"
    assert bundle.release == "web@1.2.0"
    assert bundle.debug_id == "d3331b3b-f114-540a-8e2b-4a64e03eb1de"
    assert read_bundle_file(data, "files/_/_/app.js.map", max_size=LIMIT) == app_js_map


def test_debug_id_headers_are_read_case_insensitively(app_js: bytes) -> None:
    debug_id = "C0FFEE00-1111-4222-8333-444455556666"
    data = BundleBuilder().add("~/a.js", app_js, "minified_source", {"Debug-Id": debug_id}).build()
    (file,) = parse_bundle(data, max_uncompressed=LIMIT).files
    assert file.debug_id == debug_id.lower()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04 definitely not a zip", "not a valid zip"),
        (b"", "not a valid zip"),
        (_zip({"files/_/_/app.js": b"x"}), "no manifest.json"),
        (_zip({"manifest.json": b"{not json"}), "manifest.json is not valid JSON"),
        (_zip({"manifest.json": b"[]"}), "not a JSON object"),
        (_zip({"manifest.json": b'{"files": []}'}), "no 'files' object"),
        (_zip({"manifest.json": b'{"files": {"a.js": {"type": "source"}}}'}), "has no 'url'"),
        (
            _zip({"manifest.json": b'{"files": {"files/_/_/a.js": {"url": "~/a.js", "type": "source"}}}'}),
            "no such file",
        ),
    ],
)
def test_unusable_bundles_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(InvalidBundle, match=message):
        parse_bundle(data, max_uncompressed=LIMIT)


def test_a_source_map_that_does_not_parse_is_refused_naming_it(app_js: bytes) -> None:
    data = (
        BundleBuilder()
        .add("~/app.js", app_js, "minified_source", {"sourcemap": "app.js.map"})
        .add("~/app.js.map", b'{"version":3,"sources":["a.js"],"mappings":"!!!"}', "source_map")
        .build()
    )
    with pytest.raises(InvalidBundle, match=r"source map '~/app.js.map' .* does not parse"):
        parse_bundle(data, max_uncompressed=LIMIT)


def test_bundles_that_unpack_past_the_limit_are_refused() -> None:
    data = BundleBuilder().add("~/big.js", b"a" * 10_000, "minified_source").build()
    assert len(data) < 2_000  # it compresses well: the check is on the unpacked size
    with pytest.raises(InvalidBundle, match="over the limit"):
        parse_bundle(data, max_uncompressed=5_000)


def test_a_member_that_inflates_past_the_ratio_is_refused_as_a_zip_bomb() -> None:
    # 4 MiB of zeros deflate about a thousand times over; a real source map compresses 3 to 20 times
    data = BundleBuilder().add("~/app.js.map", bytes(4 * 1024 * 1024), "source_map").build()
    with pytest.raises(InvalidBundle, match=r"'files/_/_/app.js.map' inflates to 4194304 bytes .* zip bomb"):
        parse_bundle(data, max_uncompressed=LIMIT)
    with pytest.raises(InvalidBundle, match="does not parse"):  # allowed that ratio, it is read (and is no map)
        parse_bundle(data, max_uncompressed=LIMIT, max_ratio=10_000)
