from __future__ import annotations

from detector.blame.paths import (
    frame_file_matches,
    in_app_frames,
    normalize_frame_path,
    path_match_score,
    resolve_frame_path,
)


def test_normalize_frame_path_strips_urls_and_bundler_prefixes() -> None:
    assert normalize_frame_path("../src/features/PaidFeatures.js") == "src/features/PaidFeatures.js"
    assert normalize_frame_path("webpack:///./src/a/b.ts?abc") == "src/a/b.ts"
    assert normalize_frame_path("https://app.example.com/static/js/app.js#x") == "static/js/app.js"
    assert normalize_frame_path("app:///src/x.js") == "src/x.js"
    assert normalize_frame_path("~/src/x.js") == "src/x.js"


def test_in_app_frames_are_crash_first_and_skip_libraries() -> None:
    frames = in_app_frames(
        [
            {"filename": "../src/main.js", "function": "run", "lineno": 5, "in_app": True},
            {"filename": "node_modules/react/index.js", "function": "call"},
            {"filename": "../src/vendor.js", "in_app": False},
            {"filename": "../src/features/P.js", "function": "render", "lineno": 4, "context_line": "  x.map()"},
        ]
    )
    assert [(f.path, f.depth) for f in frames] == [("src/features/P.js", 0), ("src/main.js", 1)]
    assert frames[0].context_line == "x.map()"


def test_path_match_score_counts_trailing_components() -> None:
    assert path_match_score("src/features/P.js", "app/src/features/P.js") == 3
    assert path_match_score("features/P.js", "src/other/P.js") == 1
    assert path_match_score("a/P.js", "a/Q.js") == 0


def test_frame_file_matches_prefers_exact_and_drops_generic_basenames() -> None:
    frames = in_app_frames([{"filename": "../src/api/index.js"}, {"filename": "../src/features/P.js"}])
    matches = frame_file_matches(frames, ["lib/index.js", "src/features/P.js", "other/P.js"])
    assert [(m.changed_path, m.exact) for m in matches] == [("src/features/P.js", True), ("other/P.js", False)]


def test_resolve_frame_path_needs_an_unambiguous_match() -> None:
    files = ["src/features/P.js", "src/legacy/P.js", "src/api/x.js"]
    assert resolve_frame_path("features/P.js", files) == "src/features/P.js"
    assert resolve_frame_path("P.js", files) is None
    assert resolve_frame_path("api/x.js", files) == "src/api/x.js"
