"""Frames and repository paths: normalising a frame's file name and matching it to changed files.

The suffix match is what Sentry's suspect commits do (compare path components from the end); it is the
baseline the ranking must beat, and one evidence feature among several.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_SCHEME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*")
# File names that say little on their own: a basename-only match on these is not evidence.
_GENERIC_BASENAMES = frozenset({"index", "main", "app", "utils", "util", "helpers", "types", "constants"})


@dataclass(frozen=True)
class Frame:
    """An in-app frame, normalised. `depth` 0 is the crashing frame, 1 its caller, and so on."""

    path: str
    function: str | None
    lineno: int | None
    context_line: str | None
    depth: int


@dataclass(frozen=True)
class FrameFileMatch:
    """A frame whose file matches a changed path; `score` counts equal trailing path components."""

    frame: Frame
    changed_path: str
    score: int
    exact: bool


def normalize_frame_path(name: str) -> str:
    """Turn a frame's filename/abs_path into a repository-relative-looking path.

    Drops URL scheme and host, webpack/app prefixes, query strings, `~/`, and leading `./` and `../`
    (source maps often name sources relative to the bundle's folder).
    """
    path = name.strip().replace("\\", "/")
    path = _SCHEME_RE.sub("", path)
    path = path.split("?", 1)[0].split("#", 1)[0]
    path = re.sub(r"^webpack:/*(\[?[^/]*\]?/)?", "", path) if path.startswith("webpack:") else path
    while True:
        stripped = path.removeprefix("~/").removeprefix("./").removeprefix("../").lstrip("/")
        if stripped == path:
            break
        path = stripped
    return posixpath.normpath(path) if path else ""


def in_app_frames(frames: Sequence[Mapping[str, Any]], limit: int = 10) -> list[Frame]:
    """In-app frames, crashing frame first (Sentry stores them innermost last).

    Frames without `in_app` are kept unless they point into node_modules or have no file name.
    """
    result: list[Frame] = []
    for raw in reversed(frames):
        name = raw.get("filename") or raw.get("abs_path") or ""
        if not name or raw.get("in_app") is False or "node_modules/" in name:
            continue
        path = normalize_frame_path(str(name))
        if not path or path == ".":
            continue
        lineno = raw.get("lineno")
        context = raw.get("context_line")
        result.append(
            Frame(
                path=path,
                function=str(raw["function"]) if raw.get("function") else None,
                lineno=int(lineno) if isinstance(lineno, int) else None,
                context_line=str(context).strip() if context else None,
                depth=len(result),
            )
        )
        if len(result) >= limit:
            break
    return result


def path_match_score(frame_path: str, repo_path: str) -> int:
    """Number of equal path components counted from the end (0 when the basenames differ)."""
    a = frame_path.split("/")
    b = repo_path.split("/")
    score = 0
    for x, y in zip(reversed(a), reversed(b), strict=False):
        if x != y:
            break
        score += 1
    return score


def frame_file_matches(frames: Iterable[Frame], files: Iterable[str]) -> list[FrameFileMatch]:
    """Pairs (frame, changed path) whose paths match from the end, best first.

    `exact` means every component of the shorter path matched (the frame names this file, not merely one
    with the same basename). Basename-only matches of generic names such as `index.js` are dropped.
    """
    paths = list(files)
    matches: list[FrameFileMatch] = []
    for frame in frames:
        for path in paths:
            score = path_match_score(frame.path, path)
            if score == 0:
                continue
            exact = score == min(frame.path.count("/"), path.count("/")) + 1
            stem = posixpath.splitext(posixpath.basename(path))[0].lower()
            if score == 1 and not exact and stem in _GENERIC_BASENAMES:
                continue
            matches.append(FrameFileMatch(frame=frame, changed_path=path, score=score, exact=exact))
    matches.sort(key=lambda m: (not m.exact, -m.score, m.frame.depth))
    return matches


def resolve_frame_path(frame_path: str, repo_files: Iterable[str]) -> str | None:
    """The repository file a frame points at: the unique file with the longest trailing match (≥ 2
    components, or the whole frame path), else None."""
    best: list[str] = []
    best_score = 0
    for path in repo_files:
        score = path_match_score(frame_path, path)
        if score > best_score:
            best, best_score = [path], score
        elif score == best_score and score > 0:
            best.append(path)
    whole = best_score == frame_path.count("/") + 1
    if len(best) == 1 and (best_score >= 2 or whole):
        return best[0]
    return None
