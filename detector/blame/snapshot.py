"""A RepoSnapshot backed by a local git clone (the I/O side of suspect ranking)."""

from __future__ import annotations

from collections.abc import Iterable

from detector.sources.git_repo import GitRepo


class GitSnapshot:
    """The files of `repo` at commit `sha`, read through git without touching the working tree.

    `sha` should be a full sha (the cache key); use `GitSnapshot.at(repo, rev)` to resolve a branch or tag.
    The file list is read once and kept.
    """

    def __init__(self, repo: GitRepo, sha: str) -> None:
        self.repo = repo
        self.sha = sha
        self._files: list[str] | None = None

    @classmethod
    def at(cls, repo: GitRepo, rev: str) -> GitSnapshot:
        return cls(repo, repo.resolve(rev))

    @property
    def key(self) -> tuple[str, str]:
        return (self.repo.path, self.sha)

    def list_files(self) -> list[str]:
        if self._files is None:
            self._files = self.repo.list_files(self.sha)
        return self._files

    def read_files(self, paths: Iterable[str]) -> dict[str, str]:
        return self.repo.read_files(self.sha, paths)

    def blame_line(self, path: str, line: int) -> str | None:
        return self.repo.blame_line(self.sha, path, line)
