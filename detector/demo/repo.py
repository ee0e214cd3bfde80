"""Writes the demo's git repository: a real repository the blame step reads like any linked clone."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from detector.demo.scenario import DemoCommit


class DemoRepoError(RuntimeError):
    """git is missing or refused a command; the message carries git's own words."""


MARKER = "# written by `detector demo`: its git repository, reset by each run; git ignores this folder\n*\n"
"""The demo folder's .gitignore: it marks the folder as the demo's own, and keeps it out of `git status`."""


def reset_demo_folder(folder: Path) -> Path:
    """The demo's repository path inside `folder`, emptied: a second run resets the first one's files
    rather than adding more. A folder the demo did not write is never touched (an error names it)."""
    marker = folder / ".gitignore"
    if folder.exists():
        if not (marker.is_file() and marker.read_text() == MARKER):
            raise DemoRepoError(f"{folder} exists and was not written by `detector demo`: move it, or pass --workdir")
        shutil.rmtree(folder / "repo", ignore_errors=True)
    else:
        folder.mkdir(parents=True)
    marker.write_text(MARKER)
    return folder / "repo"


def _git(path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=path, env=env, capture_output=True, text=True, check=True, timeout=30)
    except FileNotFoundError as exc:
        raise DemoRepoError("git is not installed (the demo writes a real repository)") from exc
    except subprocess.CalledProcessError as exc:
        raise DemoRepoError(f"git {' '.join(args)}: {exc.stderr.strip()}") from exc
    return done.stdout.strip()


def init_repo(path: Path) -> None:
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")


def commit(path: Path, change: DemoCommit, *, when: datetime) -> str:
    """Write the commit's files, commit them as its author at `when`, and return the full sha."""
    for relative, text in change.files.items():
        target = path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    _git(path, "add", "--", *change.files)
    stamp = when.isoformat()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": change.author,
        "GIT_AUTHOR_EMAIL": change.email,
        "GIT_COMMITTER_NAME": change.author,
        "GIT_COMMITTER_EMAIL": change.email,
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
    }
    _git(path, "-c", "commit.gpgsign=false", "commit", "-q", "-m", change.message, env=env)
    return _git(path, "rev-parse", "HEAD")


def commit_all(path: Path, changes: tuple[DemoCommit, ...], *, deploy_at: datetime) -> list[str]:
    """Commit each change at `deploy_at - change.minutes_before_deploy`; the shas in order."""
    return [commit(path, c, when=deploy_at - timedelta(minutes=c.minutes_before_deploy)) for c in changes]
