from __future__ import annotations

import base64

import pytest

from detector.sourcemaps.urls import (
    artifact_url_candidates,
    decode_data_url,
    is_in_app_path,
    join_url,
    original_source_path,
    source_mapping_url,
)


def test_a_browser_url_matches_the_tilde_artifact_first_with_then_without_query() -> None:
    assert artifact_url_candidates("http://127.0.0.1:9913/app.js") == [
        "http://127.0.0.1:9913/app.js",
        "~/app.js",
    ]
    assert artifact_url_candidates("https://cdn.example.com/static/js/app.js?v=3#top") == [
        "https://cdn.example.com/static/js/app.js?v=3",
        "https://cdn.example.com/static/js/app.js",
        "~/static/js/app.js?v=3",
        "~/static/js/app.js",
        "~/js/app.js",
        "~/app.js",
    ]


@pytest.mark.parametrize("url", [None, "", "<anonymous>", "[native code]", "http://host/", "native"])
def test_frames_without_a_file_url_have_no_candidates(url: str | None) -> None:
    assert artifact_url_candidates(url) == []


def test_app_scheme_and_bare_paths_map_to_tilde_urls() -> None:
    assert "~/dist/main.js" in artifact_url_candidates("app:///dist/main.js")
    assert artifact_url_candidates("/static/app.js")[:2] == ["/static/app.js", "~/static/app.js"]


@pytest.mark.parametrize(
    ("base", "reference", "expected"),
    [
        ("~/app.js", "app.js.map", "~/app.js.map"),
        ("~/static/js/app.js", "../maps/app.js.map", "~/static/maps/app.js.map"),
        ("~/app.js", "../../x.map", "~/x.map"),
        ("~/static/app.js", "/maps/app.js.map", "~/maps/app.js.map"),
        ("http://h/static/app.js", "app.js.map", "http://h/static/app.js.map"),
        ("~/app.js", "https://cdn/x.map", "https://cdn/x.map"),
        ("~/app.js", "~/other.map", "~/other.map"),
    ],
)
def test_join_url_resolves_map_references_beside_the_minified_file(base: str, reference: str, expected: str) -> None:
    assert join_url(base, reference) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("../src/features/PaidFeatures.js", "src/features/PaidFeatures.js"),
        ("./src/App.tsx", "src/App.tsx"),
        ("../../node_modules/@sentry/core/src/scope.ts", "node_modules/@sentry/core/src/scope.ts"),
        ("webpack:///./src/App.js", "src/App.js"),
        ("webpack:///src/App.js", "src/App.js"),
        ("webpack://my-app/./src/App.js", "src/App.js"),
        ("webpack://_N_E/../pages/index.js", "pages/index.js"),
        ("http://localhost:3000/src/main.ts?t=123", "src/main.ts"),
        ("/abs/src/x.js", "abs/src/x.js"),
    ],
)
def test_original_source_paths_read_relative_to_the_repository(source: str, expected: str) -> None:
    assert original_source_path(source) == expected


def test_node_modules_and_bundler_runtime_are_not_in_app() -> None:
    assert is_in_app_path("src/features/PaidFeatures.js")
    assert not is_in_app_path("node_modules/react-dom/cjs/react-dom.js")
    assert not is_in_app_path("webpack/bootstrap")


def test_source_mapping_url_is_read_from_the_last_lines() -> None:
    assert source_mapping_url(b"var a=1;\n//# sourceMappingURL=app.js.map\n") == "app.js.map"
    assert source_mapping_url(b"var a=1;\n/*# sourceMappingURL=app.css.map */") == "app.css.map"
    assert source_mapping_url(b"var a=1;\n") is None


def test_inline_data_url_maps_decode() -> None:
    payload = b'{"version":3}'
    url = "data:application/json;charset=utf-8;base64," + base64.b64encode(payload).decode()
    assert decode_data_url(url) == payload
    assert decode_data_url("data:application/json,%7B%7D") == b"{}"
    assert decode_data_url("app.js.map") is None


def test_docstring_examples_hold() -> None:
    import doctest

    import detector.sourcemaps.urls as urls

    result = doctest.testmod(urls)
    assert result.attempted >= 8
    assert result.failed == 0
