"""The frame-file baseline: Sentry's suspect-commit heuristic, kept to measure the ranking against.

A commit is a suspect when it changed a file whose path matches an in-app frame's path from the end; the
longer the match the better, ties go to the newest commit. Commits that match no frame are not suspects.
"""

from __future__ import annotations

from collections.abc import Sequence

from detector.blame.model import ErrorContext
from detector.blame.paths import in_app_frames, path_match_score
from detector.sources.git_repo import CommitInfo


def frame_file_baseline(error: ErrorContext, commits: Sequence[CommitInfo]) -> list[str]:
    """Shas of the commits that changed a file named in the stack trace, best first."""
    frames = in_app_frames(error.frames)
    scored: list[tuple[int, int, str]] = []
    for position, commit in enumerate(commits):
        best = max(
            (path_match_score(f.path, c.path) for f in frames for c in commit.files),
            default=0,
        )
        if best > 0:
            scored.append((best, position, commit.sha))
    scored.sort(key=lambda s: (-s[0], -s[1]))
    return [sha for _, _, sha in scored]
