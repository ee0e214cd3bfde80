"""Read-only access to a local git clone through the `git` command.

Every call runs `git -C <path> ...` in a subprocess with a timeout; nothing is ever checked out,
written to the index or fetched, so the reader is safe on a user's working tree. Revisions are
resolved with `rev-parse` before they reach any other command, so a revision can never be taken
for an option.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["CommitInfo", "FileChange", "GitError", "GitRepo"]

# Longest patch text kept per file; the counts of added/deleted lines are exact regardless.
PATCH_CAP_BYTES = 64 * 1024
# Files larger than this are not returned by read_files (minified bundles, vendored data).
READ_CAP_BYTES = 1024 * 1024

_SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
# A commit header in our `git log` format: \0\1C\0 sha \0 parents \0 name \0 email \0 time \0 body \0\1E\0.
# NUL never appears in textual patch output (git treats files with NUL as binary), so it is a safe fence.
_HEADER_START = "\x00\x01C\x00"
_HEADER_END = "\x00\x01E\x00"
_LOG_FORMAT = "--format=%x00%x01C%x00%H%x00%P%x00%an%x00%ae%x00%at%x00%B%x00%x01E%x00"


class GitError(Exception):
    """A git command failed: missing repository, unknown revision, timeout, or git not installed."""


@dataclass(frozen=True)
class FileChange:
    """One file changed by a commit (against its first parent for merges).

    `change_type` is 'A', 'M', 'D' or 'R'; `old_path` is set for renames only. `patch` holds the unified
    diff hunks for this file, truncated to PATCH_CAP_BYTES (`patch_truncated` says so); binary files have
    an empty patch and zero counts.
    """

    path: str
    change_type: str
    old_path: str | None = None
    additions: int = 0
    deletions: int = 0
    patch: str = ""
    patch_truncated: bool = False


@dataclass(frozen=True)
class CommitInfo:
    """A commit with its changed files. `timestamp` is the author time, timezone-aware UTC."""

    sha: str
    message: str
    author_name: str
    author_email: str
    timestamp: datetime
    parents: tuple[str, ...]
    files: list[FileChange] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """The first line of the message."""
        return self.message.split("\n", 1)[0]

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


class GitRepo:
    """A read-only reader of the git repository at `path`.

    The constructor only stores its arguments; a missing or invalid repository surfaces as GitError on
    the first call. `timeout` (seconds) bounds every git command.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"GitRepo({self.path!r})"

    # -- public API ---------------------------------------------------------------------------------

    def resolve(self, rev: str) -> str:
        """Return the full commit sha that `rev` (sha, abbreviation, branch, tag) names; GitError if none."""
        if not rev or rev.startswith("-") or "\n" in rev:
            raise GitError(f"invalid revision {rev!r}")
        proc = self._run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], check=False)
        out = proc.stdout.decode().strip()
        if proc.returncode != 0 or not _SHA_RE.match(out):
            raise GitError(f"unknown revision {rev!r} in {self.path}")
        return out

    def commits_between(self, from_sha: str | None, to_sha: str, max_count: int = 500) -> list[CommitInfo]:
        """Commits reachable from `to_sha` but not from `from_sha` (all ancestors when None), oldest first.

        Merge commits are included, with their diff against the first parent; renames are detected. When
        more than `max_count` commits qualify, the newest `max_count` are returned.
        """
        to = self.resolve(to_sha)
        rng = f"{self.resolve(from_sha)}..{to}" if from_sha else to
        return list(self._log([f"--max-count={int(max_count)}", "--date-order", "--reverse", rng]))

    def commit(self, sha: str) -> CommitInfo:
        """One commit with its changed files."""
        commits = list(self._log(["--max-count=1", self.resolve(sha)]))
        return commits[0]

    def list_files(self, sha: str) -> list[str]:
        """Every file path in the tree of commit `sha`, sorted as git sorts them."""
        out = self._run(["ls-tree", "-r", "-z", "--name-only", self.resolve(sha)]).stdout
        return [p for p in out.decode("utf-8", "surrogateescape").split("\x00") if p]

    def read_files(self, sha: str, paths: Iterable[str], *, max_bytes: int = READ_CAP_BYTES) -> dict[str, str]:
        """Text of `paths` at commit `sha`, read in one `cat-file --batch` call.

        Paths that do not exist at `sha`, are not files, or exceed `max_bytes` are left out of the result.
        Text is decoded as UTF-8 with undecodable bytes replaced.
        """
        commit = self.resolve(sha)
        wanted = [p for p in dict.fromkeys(paths) if p and "\n" not in p]
        if not wanted:
            return {}
        request = "".join(f"{commit}:{p}\n" for p in wanted).encode("utf-8", "surrogateescape")
        out = self._run(["cat-file", "--batch"], stdin=request).stdout
        result: dict[str, str] = {}
        pos = 0
        for path in wanted:
            eol = out.index(b"\n", pos)
            header = out[pos:eol].split(b" ")
            pos = eol + 1
            if len(header) != 3:  # "<name> missing" or "<name> ambiguous"
                continue
            kind, size = header[1], int(header[2])
            body = out[pos : pos + size]
            pos += size + 1  # the content is followed by a newline
            if kind == b"blob" and size <= max_bytes:
                result[path] = body.decode("utf-8", "replace")
        return result

    def blame_line(self, sha: str, path: str, line: int) -> str | None:
        """The commit that last changed line `line` (1-based) of `path`, blaming the history of `sha`.

        None when the path does not exist at `sha` or the line is past its end.
        """
        commit = self.resolve(sha)
        if line < 1:
            return None
        proc = self._run(["blame", "--porcelain", "-L", f"{line},{line}", commit, "--", path], check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace")
            if "no such path" in err or "has only" in err or "no such file" in err.lower():
                return None
            raise GitError(f"git blame {path}:{line} at {commit[:12]} failed in {self.path}: {err.strip()}")
        first = proc.stdout.split(b"\n", 1)[0].decode()
        blamed = first.split(" ", 1)[0]
        return blamed if _SHA_RE.match(blamed) else None

    def is_ancestor(self, a: str, b: str) -> bool:
        """True when commit `a` is an ancestor of (or equal to) commit `b`."""
        proc = self._run(["merge-base", "--is-ancestor", self.resolve(a), self.resolve(b)], check=False)
        if proc.returncode in (0, 1):
            return proc.returncode == 0
        raise GitError(f"git merge-base failed in {self.path}: {proc.stderr.decode().strip()}")

    # -- internals ----------------------------------------------------------------------------------

    def _command(self, args: list[str]) -> list[str]:
        return [
            "git", "-C", self.path,
            "-c", "core.quotepath=off",
            "-c", "log.showSignature=false",
            "-c", "diff.noprefix=false",
            "-c", "diff.mnemonicPrefix=false",
            *args,
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # No prompts, no optional lock files (we must never write to the user's repository), stable text.
        env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "LANG": "C"})
        return env

    def _check_repository(self) -> None:
        if not Path(self.path).is_dir():
            raise GitError(f"no git repository at {self.path}: the directory does not exist")

    def _run(
        self, args: list[str], *, stdin: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        self._check_repository()
        try:
            proc = subprocess.run(
                self._command(args),
                input=stdin,
                capture_output=True,
                timeout=self.timeout,
                env=self._env(),
                check=False,
            )
        except FileNotFoundError as exc:
            raise GitError("the git command is not installed or not on PATH") from exc
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {args[0]} timed out after {self.timeout:g}s in {self.path}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            if "not a git repository" in err:
                raise GitError(f"{self.path} is not a git repository")
            if check:
                raise GitError(f"git {args[0]} failed in {self.path}: {err}")
        return proc

    def _log(self, args: list[str]) -> Iterator[CommitInfo]:
        """Stream `git log -p` output and parse it commit by commit, keeping memory per commit bounded."""
        self._check_repository()
        cmd = self._command(
            [
                "log", _LOG_FORMAT, "-p", "-M", "--diff-merges=first-parent",
                "--no-color", "--no-ext-diff", "--no-textconv", *args,
            ]
        )  # fmt: skip
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self._env())
        except FileNotFoundError as exc:
            raise GitError("the git command is not installed or not on PATH") from exc
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(self.timeout, kill)
        timer.start()
        try:
            assert proc.stdout is not None
            commits = list(_parse_log(proc.stdout))
            stderr = proc.stderr.read() if proc.stderr else b""
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if timed_out.is_set():
            raise GitError(f"git log timed out after {self.timeout:g}s in {self.path}")
        if proc.returncode != 0:
            err = stderr.decode("utf-8", "replace").strip()
            if "not a git repository" in err:
                raise GitError(f"{self.path} is not a git repository")
            raise GitError(f"git log failed in {self.path}: {err}")
        yield from commits


# -- parsing `git log -p` ----------------------------------------------------------------------------


def _parse_log(stream: Iterable[bytes]) -> Iterator[CommitInfo]:
    header: list[str] | None = None
    header_buf: list[str] = []
    in_header = False
    diff_lines: list[str] = []
    for raw in stream:
        line = raw.decode("utf-8", "replace")
        if not in_header and line.startswith(_HEADER_START):
            if header is not None:
                yield _make_commit(header, diff_lines)
            header, diff_lines, header_buf, in_header = None, [], [], True
            line = line[len(_HEADER_START) :]
        if in_header:
            header_buf.append(line)
            text = "".join(header_buf)
            if _HEADER_END in text:
                header = text.split(_HEADER_END, 1)[0].split("\x00")
                in_header = False
            continue
        diff_lines.append(line)
    if header is not None:
        yield _make_commit(header, diff_lines)


def _make_commit(header: list[str], diff_lines: list[str]) -> CommitInfo:
    sha, parents, name, email, ts, body = header[:6]
    return CommitInfo(
        sha=sha,
        message=body.strip("\n"),
        author_name=name,
        author_email=email,
        timestamp=datetime.fromtimestamp(int(ts), tz=UTC),
        parents=tuple(parents.split()),
        files=list(_parse_patch(diff_lines)),
    )


def _parse_patch(lines: list[str]) -> Iterator[FileChange]:
    """Split a multi-file unified diff into FileChange records."""
    block: list[str] = []
    for line in lines:
        if line.startswith("diff --git "):
            if block:
                yield _file_change(block)
            block = [line]
        elif block:
            block.append(line)
    if block:
        yield _file_change(block)


def _file_change(block: list[str]) -> FileChange:
    old_path = new_path = None
    change = "M"
    additions = deletions = 0
    hunks: list[str] = []
    size = 0
    truncated = False
    in_hunks = False
    for line in block[1:]:
        if line.startswith("@@"):
            in_hunks = True
        if in_hunks:
            if line.startswith("+"):
                additions += 1
            elif line.startswith("-"):
                deletions += 1
            if not truncated:
                if size + len(line) > PATCH_CAP_BYTES:
                    truncated = True
                else:
                    hunks.append(line)
                    size += len(line)
            continue
        # git ends ---/+++ lines with a tab when the path holds a space (for GNU patch); drop it.
        text = line.rstrip("\n").removesuffix("\t")
        if text.startswith("new file mode"):
            change = "A"
        elif text.startswith("deleted file mode"):
            change = "D"
        elif text.startswith("rename from "):
            change, old_path = "R", _unquote(text[len("rename from ") :])
        elif text.startswith("rename to "):
            new_path = _unquote(text[len("rename to ") :])
        elif text.startswith("--- ") and text[4:] != "/dev/null":
            old_path = old_path or _strip_prefix(_unquote(text[4:]), "a/")
        elif text.startswith("+++ ") and text[4:] != "/dev/null":
            new_path = _strip_prefix(_unquote(text[4:]), "b/")
    if new_path is None:
        new_path = old_path if change == "D" and old_path else _path_from_diff_line(block[0])
    return FileChange(
        path=new_path,
        change_type=change,
        old_path=old_path if change == "R" else None,
        additions=additions,
        deletions=deletions,
        patch="".join(hunks),
        patch_truncated=truncated,
    )


def _path_from_diff_line(line: str) -> str:
    """The path of `diff --git a/P b/P` for entries without ---/+++ lines (binary, mode-only)."""
    rest = line.rstrip("\n")[len("diff --git ") :]
    if rest.startswith('"'):
        # Quoted form: "a/P" "b/P"; take the second quoted token.
        parts = re.findall(r'"((?:[^"\\]|\\.)*)"', rest)
        if parts:
            return _strip_prefix(_unquote(f'"{parts[-1]}"'), "b/")
    # Unquoted and equal on both sides: "a/" + P + " b/" + P.
    half = (len(rest) - 5) // 2
    return rest[2 : 2 + half] if half > 0 else rest


def _strip_prefix(path: str, prefix: str) -> str:
    return path[len(prefix) :] if path.startswith(prefix) else path


def _unquote(text: str) -> str:
    """Undo git's C-style quoting of unusual paths ("a/t\\303\\251st")."""
    if not (len(text) >= 2 and text.startswith('"') and text.endswith('"')):
        return text
    body = text[1:-1]
    out = bytearray()
    i = 0
    escapes = {"n": b"\n", "t": b"\t", '"': b'"', "\\": b"\\", "a": b"\a", "b": b"\b", "f": b"\f",
               "r": b"\r", "v": b"\v"}  # fmt: skip
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            octal = body[i + 1 : i + 4]
            if len(octal) == 3 and all(c in "01234567" for c in octal):
                out += bytes([int(octal, 8) & 0xFF])
                i += 4
                continue
            out += escapes.get(nxt, nxt.encode())
            i += 2
            continue
        out += ch.encode("utf-8")
        i += 1
    return out.decode("utf-8", "replace")
