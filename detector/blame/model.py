"""The values suspect ranking works on: the error, the snapshot of the repository, and the result.

Commits come in as `detector.sources.git_repo.CommitInfo` (a plain dataclass; callers without a linked
repository build them from sentry-cli's `patch_set`, with empty patches).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ErrorContext:
    """The error being explained. `frames` are Sentry frame dicts, innermost (crashing) frame LAST,
    as Sentry stores them; keys used: filename, abs_path, function, lineno, context_line, in_app."""

    type: str
    value: str
    title: str = ""
    frames: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Suspect:
    """One ranked commit. `score` is comparable within one ranking only; `evidence` holds short sentences,
    strongest first; `features` holds the numbers behind the score (names documented in docs/BLAME.md)."""

    sha: str
    message: str
    author: str
    score: float
    evidence: list[str]
    features: dict[str, float]


@dataclass(frozen=True)
class SuspectRanking:
    """Suspects best first, and the kinds of evidence that could not be used, with the reason."""

    suspects: list[Suspect]
    unavailable: list[str]


@runtime_checkable
class RepoSnapshot(Protocol):
    """Files of the repository at the deployed commit.

    `key` identifies the snapshot for caching, e.g. (repository path, sha); two snapshots with the same key
    must hold the same files.
    """

    @property
    def key(self) -> tuple[str, str]: ...

    def list_files(self) -> list[str]: ...

    def read_files(self, paths: Iterable[str]) -> dict[str, str]: ...

    def blame_line(self, path: str, line: int) -> str | None: ...


@dataclass(frozen=True)
class MemorySnapshot:
    """A RepoSnapshot held in memory: {path: text}, and optionally {(path, line): sha} for blame."""

    files: Mapping[str, str]
    blame: Mapping[tuple[str, int], str] = field(default_factory=dict)
    name: str = "memory"
    sha: str = "0" * 40

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.sha)

    def list_files(self) -> list[str]:
        return sorted(self.files)

    def read_files(self, paths: Iterable[str]) -> dict[str, str]:
        return {p: self.files[p] for p in paths if p in self.files}

    def blame_line(self, path: str, line: int) -> str | None:
        return self.blame.get((path, line))
