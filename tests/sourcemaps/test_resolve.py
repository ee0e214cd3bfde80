"""Resolving frames with `symbolic`: the real fixture bundle, and small hand-made maps for the edge cases."""

from __future__ import annotations

import json

import pytest
from symbolic.sourcemap import SourceMapView, SourceView

from detector.intake.normalize import Frame
from detector.sourcemaps.resolve import LoadedSourceMap, minified_name_of, resolve_frame

APP_URL = "http://127.0.0.1:9913/app.js"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _vlq(value: int) -> str:
    value = (-value << 1) | 1 if value < 0 else value << 1
    out = ""
    while True:
        digit, value = value & 31, value >> 5
        out += _B64[digit | (32 if value else 0)]
        if not value:
            return out


def make_map(sources: dict[str, str], lines: list[list[tuple[int, ...]]], names: list[str]) -> bytes:
    """A v3 source map; each segment is (gen_col, src_index, src_line, src_col[, name_index]), absolute."""
    previous = [0, 0, 0, 0]
    encoded_lines = []
    for segments in lines:
        gen_col = 0
        parts = []
        for segment in segments:
            fields = [segment[0] - gen_col]
            gen_col = segment[0]
            for i, value in enumerate(segment[1:]):
                fields.append(value - previous[i])
                previous[i] = value
            parts.append("".join(_vlq(v) for v in fields))
        encoded_lines.append(",".join(parts))
    return json.dumps(
        {
            "version": 3,
            "sources": list(sources),
            "sourcesContent": list(sources.values()),
            "names": names,
            "mappings": ";".join(encoded_lines),
        }
    ).encode()


@pytest.fixture(scope="module")
def fixture_map(app_js: bytes, app_js_map: bytes) -> LoadedSourceMap:
    return LoadedSourceMap(
        sourcemap=SourceMapView.from_json_bytes(app_js_map),
        minified=SourceView.from_bytes(app_js),
        map_url="~/app.js.map",
    )


def test_the_incident_frame_resolves_to_paid_features_line_4(fixture_map: LoadedSourceMap) -> None:
    frame = Frame(filename=APP_URL, function="Pl", lineno=15, colno=33436, in_app=True)
    resolved = resolve_frame(frame, fixture_map, frame_url=APP_URL)
    assert resolved is not None
    assert resolved.filename == "src/features/PaidFeatures.js"
    assert resolved.abs_path == "http://127.0.0.1:9913/src/features/PaidFeatures.js"
    assert (resolved.lineno, resolved.colno) == (4, 23)
    assert resolved.function == "renderPaidFeatures"
    assert resolved.context_line == '  return entitlements.map((e) => `<li>${e.feature}</li>`).join("");'
    assert resolved.pre_context[-1] == "  const entitlements = await getEntitlements(userId);"
    assert resolved.pre_context[0].startswith("import { getEntitlements }")
    assert resolved.post_context[0] == "}"
    assert resolved.in_app is True


def test_an_unminified_function_name_is_kept_as_the_sdk_wrote_it(fixture_map: LoadedSourceMap) -> None:
    frame = Frame(filename=APP_URL, function="async window.run", lineno=15, colno=33693, in_app=True)
    resolved = resolve_frame(frame, fixture_map, frame_url=APP_URL)
    assert resolved is not None
    assert (resolved.filename, resolved.lineno) == ("src/main.js", 5)
    assert resolved.function == "async window.run"
    assert "await renderPaidFeatures" in (resolved.context_line or "")


def test_sdk_code_from_node_modules_is_not_in_app(fixture_map: LoadedSourceMap, app_js: bytes) -> None:
    # the first mapped position of the bundle is @sentry/core, bundled from node_modules
    frame = Frame(filename=APP_URL, function="x", lineno=2, colno=10, in_app=True)
    resolved = resolve_frame(frame, fixture_map, frame_url=APP_URL)
    assert resolved is not None
    assert resolved.filename.startswith("node_modules/@sentry/")
    assert resolved.in_app is False


@pytest.mark.parametrize(
    "frame",
    [
        Frame(filename=APP_URL, function="Pl", lineno=None, colno=33436),
        Frame(filename=APP_URL, function="Pl", lineno=15, colno=None),
        Frame(filename=APP_URL, function="Pl", lineno=0, colno=0),
        Frame(filename=APP_URL, function="Pl", lineno=381, colno=23),  # past the end of the bundle
    ],
)
def test_positions_the_map_does_not_cover_are_not_resolved(fixture_map: LoadedSourceMap, frame: Frame) -> None:
    assert resolve_frame(frame, fixture_map, frame_url=APP_URL) is None


UTIL_SOURCE = "export const formatPrice = function (amount) {\n  return amount.value.toFixed(2);\n};\n"
UTIL_MINIFIED = "var Qa=function(n){return n.value.toFixed(2)};\n"


@pytest.fixture
def util_map() -> LoadedSourceMap:
    source_map = make_map(
        {"webpack://shop/./src/util.js": UTIL_SOURCE},
        [[(0, 0, 0, 0), (4, 0, 0, 13, 0), (7, 0, 0, 27), (16, 0, 0, 37, 1), (26, 0, 1, 9, 1), (34, 0, 1, 22)]],
        ["formatPrice", "amount"],
    )
    return LoadedSourceMap(
        sourcemap=SourceMapView.from_json_bytes(source_map),
        minified=SourceView.from_bytes(UTIL_MINIFIED.encode()),
        map_url="~/static/util.js.map",
    )


def test_function_assigned_to_a_minified_name_gets_its_original_name(util_map: LoadedSourceMap) -> None:
    frame = Frame(filename="https://shop.example/static/util.js", function="Qa", lineno=1, colno=35)
    resolved = resolve_frame(frame, util_map, frame_url=frame.filename)
    assert resolved is not None
    assert resolved.filename == "src/util.js"
    assert resolved.abs_path == "webpack://shop/./src/util.js"
    assert (resolved.lineno, resolved.colno) == (2, 23)
    assert resolved.function == "formatPrice"
    assert resolved.context_line == "  return amount.value.toFixed(2);"
    assert resolved.pre_context == ["export const formatPrice = function (amount) {"]


def test_without_the_minified_file_the_position_still_resolves(util_map: LoadedSourceMap) -> None:
    loaded = LoadedSourceMap(sourcemap=util_map.sourcemap, minified=None, map_url=util_map.map_url)
    frame = Frame(filename="https://shop.example/static/util.js", function="Qa", lineno=1, colno=35)
    resolved = resolve_frame(frame, loaded)
    assert resolved is not None
    assert (resolved.filename, resolved.lineno) == ("src/util.js", 2)
    assert resolved.function == "Qa"  # nothing to read the definition from: the SDK's name stays


def test_a_minified_name_that_is_not_defined_nearby_is_kept(util_map: LoadedSourceMap) -> None:
    frame = Frame(filename="https://shop.example/static/util.js", function="Zz", lineno=1, colno=35)
    resolved = resolve_frame(frame, util_map)
    assert resolved is not None
    assert resolved.function == "Zz"


def test_long_original_lines_are_cut_around_the_column() -> None:
    long_line = "x" * 100 + "boom()" + "y" * 300
    source_map = make_map({"src/long.js": long_line + "\n"}, [[(0, 0, 0, 100)]], [])
    loaded = LoadedSourceMap(SourceMapView.from_json_bytes(source_map), None, "~/long.js.map")
    resolved = resolve_frame(Frame(filename="http://h/long.js", lineno=1, colno=1), loaded)
    assert resolved is not None
    assert resolved.context_line is not None
    assert "boom()" in resolved.context_line
    assert resolved.context_line.startswith("{snip} ")
    assert resolved.context_line.endswith(" {snip}")
    assert len(resolved.context_line) < 170


@pytest.mark.parametrize(
    ("function", "expected"),
    [("Pl", "Pl"), ("async window.run", "run"), ("n.render", "render"), ("new Qa", "Qa"), ("?", None), (None, None)],
)
def test_minified_name_of_frame_functions(function: str | None, expected: str | None) -> None:
    assert minified_name_of(function) == expected
