"""What is known about a commit before looking at the error: its kind, its size, its place in the deploy.

Pure functions over paths and counts; the weights that use them live in rank.py.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterable, Sequence

_STYLE_EXT = (".css", ".scss", ".sass", ".less", ".styl", ".pcss")
_DOC_EXT = (".md", ".mdx", ".rst", ".txt", ".adoc")
_ASSET_EXT = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".webp", ".woff", ".woff2", ".ttf", ".eot")
_LOCKFILES = frozenset({"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb"})
_TEST_RE = re.compile(
    r"(^|/)(__tests__|__mocks__|tests?|e2e|cypress|playwright|spec|stories|\.storybook|\.github)/"
    r"|\.(test|spec|stories|cy)\.[cm]?[jt]sx?$"
)
_NON_RUNTIME_KINDS = frozenset({"style", "docs", "test", "asset", "lockfile", "ci"})


def file_kind(path: str) -> str:
    """'test', 'style', 'docs', 'asset', 'lockfile', 'ci' or 'code' (anything that may run in the app)."""
    lower = path.lower()
    base = posixpath.basename(lower)
    if lower.startswith((".github/", ".gitlab/", ".circleci/")) or base in (".gitlab-ci.yml",):
        return "ci"
    if _TEST_RE.search(lower):
        return "test"
    if lower.endswith(_STYLE_EXT):
        return "style"
    if lower.endswith(_DOC_EXT) or base in ("license", "changelog", "authors"):
        return "docs"
    if lower.endswith(_ASSET_EXT):
        return "asset"
    if base in _LOCKFILES:
        return "lockfile"
    return "code"


def commit_kind(paths: Iterable[str]) -> str:
    """'code' when any changed file may run in the app; otherwise the kind of its files ('style', 'docs',
    'test', …, or 'non-runtime' for a mix). An empty commit (a merge without changes) is 'empty'."""
    kinds = {file_kind(p) for p in paths}
    if not kinds:
        return "empty"
    if "code" in kinds:
        return "code"
    return kinds.pop() if len(kinds) == 1 else "non-runtime"


def is_runtime_path(path: str) -> bool:
    return file_kind(path) == "code"


def size_specificity(changed_files: int, changed_lines: int) -> float:
    """1.0 for a focused commit, lower for a sweeping one: a file-level link to a commit that changed 40
    files says less than the same link to a commit that changed 2. Never below 0.25."""
    files_factor = 1.0 / (1.0 + math.log2(max(1.0, changed_files / 4.0)))
    lines_factor = 1.0 / (1.0 + 0.5 * math.log2(max(1.0, changed_lines / 400.0)))
    return max(0.25, files_factor * lines_factor)


def recency(position: int, count: int) -> float:
    """0.0 for the oldest commit of the deploy, 1.0 for the newest."""
    return position / (count - 1) if count > 1 else 1.0


def fragility(paths: Sequence[str], break_counts: dict[str, int] | None) -> float:
    """How often the commit's files were blamed before: log1p of the largest past count, 0 when unknown."""
    if not break_counts:
        return 0.0
    return max((math.log1p(break_counts.get(p, 0)) for p in paths), default=0.0)
