"""Artifact names that would point outside a release's own files (issue 18, item 8)."""

from __future__ import annotations

import pytest

from detector.sourcemaps.names import unsafe_path_problem, unsafe_url_problem


@pytest.mark.parametrize(
    "url",
    ["~/app.js", "~/static/js/app.js.map", "https://cdn.example/static/app.js", "app.js", "~/a..b/app.js", "~/.well/x"],
)
def test_plain_urls_are_safe(url: str) -> None:
    assert unsafe_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("~/../app.js", "'..' segment"),
        ("~/static/../../x.js", "'..' segment"),
        ("https://cdn.example/a/../b.js", "'..' segment"),
        ("~/static/%2E%2E/x.js", "'..' segment"),
        ("~\\..\\x.js", "'..' segment"),
        ("/etc/passwd", "absolute path"),
        ("C:\\build\\app.js", "absolute path"),
    ],
)
def test_dot_dot_and_absolute_urls_are_unsafe(url: str, problem: str) -> None:
    assert problem in (unsafe_url_problem(url) or "")


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../x.js", "'..' segment"),
        ("files/_/_/../../x", "'..' segment"),
        ("/x.js", "absolute path"),
        ("D:/x", "absolute path"),
    ],
)
def test_dot_dot_and_absolute_paths_in_the_zip_are_unsafe(path: str, problem: str) -> None:
    assert problem in (unsafe_path_problem(path) or "")
    assert unsafe_path_problem("files/_/_/static/app.js") is None
