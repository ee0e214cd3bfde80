from __future__ import annotations

from detector.blame.priors import commit_kind, file_kind, fragility, recency, size_specificity


def test_file_and_commit_kinds() -> None:
    assert file_kind("src/styles/app.scss") == "style"
    assert file_kind("src/api/__tests__/x.test.js") == "test"
    assert file_kind("src/Button.stories.tsx") == "test"
    assert file_kind("README.md") == "docs"
    assert file_kind("src/api/x.ts") == "code"
    assert commit_kind(["a.css", "b.css"]) == "style"
    assert commit_kind(["a.css", "README.md"]) == "non-runtime"
    assert commit_kind(["a.css", "src/x.js"]) == "code"
    assert commit_kind([]) == "empty"


def test_size_specificity_falls_with_size_but_has_a_floor() -> None:
    assert size_specificity(2, 20) == 1.0
    assert size_specificity(40, 2000) < size_specificity(8, 100) < 1.0
    assert size_specificity(10_000, 10**6) == 0.25


def test_recency_and_fragility() -> None:
    assert recency(0, 5) == 0.0 and recency(4, 5) == 1.0 and recency(0, 1) == 1.0
    assert fragility(["a.js"], None) == 0.0
    assert fragility(["a.js", "b.js"], {"b.js": 3}) > 0
