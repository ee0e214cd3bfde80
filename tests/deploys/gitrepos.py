"""Real git repositories for deploy tests: a linear history, a rename, and a merged branch.

Use from any test folder: `from tests.deploys.gitrepos import build_history`.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Dana",
    "GIT_AUTHOR_EMAIL": "dana@example.com",
    "GIT_COMMITTER_NAME": "Dana",
    "GIT_COMMITTER_EMAIL": "dana@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}

ENTITLEMENTS_V1 = 'export async function getEntitlements(userId) {\n  return [{ feature: "pdf" }];\n}\n'
ENTITLEMENTS_V2 = "export async function getEntitlements(userId) {\n  return { items: [] };\n}\n"
PAID = (
    'import { getEntitlements } from "../api/entitlements";\n'
    "export async function renderPaidFeatures(userId) {\n"
    "  const entitlements = await getEntitlements(userId);\n"
    "  return entitlements.map((e) => e.feature).join('');\n"
    "}\n"
)


def git(repo: Path, *args: str, when: int | None = None) -> str:
    env = dict(ENV)
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{when} +0000"
    return subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def write(repo: Path, path: str, text: str) -> None:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def commit(repo: Path, message: str, when: int) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, when=when)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class History:
    """The shas of `build_history`:

    base      Initial app (entitlements.js, PaidFeatures.js, util/format.js)
    v1        v1 (README) — deployed first
    feature   on branch `feature`: rename util/format.js → util/formatting.js
    main_fix  on main: change entitlements.js to return an object (the culprit)
    merge     merge of `feature` into main
    v2        the merge's child: add src/instrument.js
    """

    path: Path
    base: str
    v1: str
    feature: str
    main_fix: str
    merge: str
    v2: str


def build_history(repo: Path, *, remote: str = "https://git.example.com/acme/web.git") -> History:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Dana")
    git(repo, "config", "user.email", "dana@example.com")
    git(repo, "config", "commit.gpgsign", "false")
    git(repo, "remote", "add", "origin", remote)
    t = 1_795_600_000
    write(repo, "src/api/entitlements.js", ENTITLEMENTS_V1)
    write(repo, "src/features/PaidFeatures.js", PAID)
    write(repo, "src/util/format.js", "export const fmt = (x) => String(x);\n" * 3)
    base = commit(repo, "Initial app", t)
    write(repo, "README.md", "# web\n")
    v1 = commit(repo, "v1", t + 60)
    git(repo, "checkout", "-q", "-b", "feature")
    git(repo, "mv", "src/util/format.js", "src/util/formatting.js")
    feature = commit(repo, "Rename format helper", t + 120)
    git(repo, "checkout", "-q", "main")
    write(repo, "src/api/entitlements.js", ENTITLEMENTS_V2)
    main_fix = commit(repo, "Return entitlements as an object", t + 180)
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature", when=t + 240)
    merge = git(repo, "rev-parse", "HEAD")
    write(repo, "src/instrument.js", "export const instrumented = true;\n")
    v2 = commit(repo, "Add instrumentation", t + 300)
    return History(path=repo, base=base, v1=v1, feature=feature, main_fix=main_fix, merge=merge, v2=v2)
