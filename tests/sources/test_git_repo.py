from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detector.sources.git_repo import PATCH_CAP_BYTES, GitError, GitRepo
from tests.deploys.gitrepos import ENTITLEMENTS_V1, ENTITLEMENTS_V2, PAID, commit, git, write


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """base → (branch: rename + edit) merged into main after a main-side change; see asserts."""
    repo = tmp_path_factory.mktemp("repo")
    git(repo, "init", "-q", "-b", "main")
    write(repo, "src/api/entitlements.js", ENTITLEMENTS_V1)
    write(repo, "src/features/PaidFeatures.js", PAID)
    write(repo, "src/util/format.js", "export const fmt = (x) => String(x);\n" * 20)
    base = commit(repo, "initial", 1_700_000_000)
    git(repo, "checkout", "-q", "-b", "feature")
    git(repo, "mv", "src/util/format.js", "src/util/formatting.js")
    feature_rename = commit(repo, "rename format util", 1_700_000_100)
    write(repo, "src/api/entitlements.js", ENTITLEMENTS_V2)
    feature_change = commit(repo, "entitlements: return an object\n\nLonger body.", 1_700_000_200)
    git(repo, "checkout", "-q", "main")
    write(repo, "README.md", "hello\n")
    main_change = commit(repo, "add readme", 1_700_000_300)
    git(repo, "merge", "-q", "--no-ff", "feature", "-m", "Merge feature", when=1_700_000_400)
    merge = git(repo, "rev-parse", "HEAD")
    (repo / "src/features/PaidFeatures.js").unlink()
    write(repo, "assets/logo.bin", "")
    (repo / "assets/logo.bin").write_bytes(b"\x00\x01\x02binary")
    write(repo, "src/name with space.js", "export const a = 1;\n")
    delete = commit(repo, "remove paid features, add logo", 1_700_000_500)
    return {
        "repo": repo,
        "base": base,
        "feature_rename": feature_rename,
        "feature_change": feature_change,
        "main_change": main_change,
        "merge": merge,
        "delete": delete,
    }


def test_resolve_branch_and_abbreviation(history: dict) -> None:
    repo = GitRepo(history["repo"])
    assert repo.resolve("main") == history["delete"]
    assert repo.resolve(history["base"][:10]) == history["base"]


def test_resolve_unknown_revision_raises_clear_error(history: dict) -> None:
    with pytest.raises(GitError, match="unknown revision 'nope'"):
        GitRepo(history["repo"]).resolve("nope")
    with pytest.raises(GitError, match="invalid revision"):
        GitRepo(history["repo"]).resolve("--all")


def test_missing_directory_and_non_repository(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="does not exist"):
        GitRepo(tmp_path / "absent").resolve("HEAD")
    plain = tmp_path / "plain"
    plain.mkdir()
    env_ceiling = os.environ.get("GIT_CEILING_DIRECTORIES")
    os.environ["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    try:
        with pytest.raises(GitError, match="not a git repository"):
            GitRepo(plain).list_files("HEAD")
    finally:
        if env_ceiling is None:
            del os.environ["GIT_CEILING_DIRECTORIES"]
        else:
            os.environ["GIT_CEILING_DIRECTORIES"] = env_ceiling


def test_commits_between_is_oldest_first_and_includes_merge(history: dict) -> None:
    commits = GitRepo(history["repo"]).commits_between(history["base"], history["merge"])
    shas = [c.sha for c in commits]
    assert set(shas) == {
        history["feature_rename"],
        history["feature_change"],
        history["main_change"],
        history["merge"],
    }
    assert shas[-1] == history["merge"]
    assert shas.index(history["feature_rename"]) < shas.index(history["feature_change"])
    merge = commits[-1]
    assert merge.is_merge and merge.parents[0] == history["main_change"]


def test_merge_diff_is_against_first_parent(history: dict) -> None:
    merge = GitRepo(history["repo"]).commit(history["merge"])
    changes = {f.path: f for f in merge.files}
    assert set(changes) == {"src/util/formatting.js", "src/api/entitlements.js"}
    assert changes["src/util/formatting.js"].change_type == "R"
    assert changes["src/util/formatting.js"].old_path == "src/util/format.js"


def test_commit_metadata_and_patch(history: dict) -> None:
    info = GitRepo(history["repo"]).commit(history["feature_change"])
    assert info.message == "entitlements: return an object\n\nLonger body."
    assert info.summary == "entitlements: return an object"
    assert (info.author_name, info.author_email) == ("Dana", "dana@example.com")
    assert info.timestamp == datetime.fromtimestamp(1_700_000_200, tz=UTC)
    assert info.parents == (history["feature_rename"],)
    [change] = info.files
    assert (change.path, change.change_type, change.old_path) == ("src/api/entitlements.js", "M", None)
    assert (change.additions, change.deletions) == (1, 1)
    assert change.patch.startswith("@@ ")
    assert "+  return { items: [] };" in change.patch
    assert '-  return [{ feature: "pdf" }];' in change.patch


def test_rename_detected(history: dict) -> None:
    [change] = GitRepo(history["repo"]).commit(history["feature_rename"]).files
    assert change.change_type == "R"
    assert (change.old_path, change.path) == ("src/util/format.js", "src/util/formatting.js")
    assert (change.additions, change.deletions) == (0, 0)


def test_delete_binary_and_space_in_name(history: dict) -> None:
    info = GitRepo(history["repo"]).commit(history["delete"])
    changes = {f.path: f for f in info.files}
    assert changes["src/features/PaidFeatures.js"].change_type == "D"
    assert changes["src/features/PaidFeatures.js"].deletions == 5
    assert changes["assets/logo.bin"].change_type == "A"
    assert changes["assets/logo.bin"].patch == ""
    assert changes["src/name with space.js"].change_type == "A"
    assert changes["src/name with space.js"].additions == 1


def test_commits_between_without_base_and_max_count_keeps_newest(history: dict) -> None:
    repo = GitRepo(history["repo"])
    everything = repo.commits_between(None, "main")
    assert everything[0].sha == history["base"]
    assert len(everything) == 6
    newest_two = repo.commits_between(None, "main", max_count=2)
    assert [c.sha for c in newest_two] == [history["merge"], history["delete"]]


def test_list_and_read_files_at_a_commit(history: dict) -> None:
    repo = GitRepo(history["repo"])
    files = repo.list_files(history["merge"])
    assert "src/util/formatting.js" in files and "src/util/format.js" not in files
    texts = repo.read_files(
        history["base"], ["src/api/entitlements.js", "src/features/PaidFeatures.js", "missing.js", "src"]
    )
    assert texts == {"src/api/entitlements.js": ENTITLEMENTS_V1, "src/features/PaidFeatures.js": PAID}
    assert repo.read_files(history["merge"], ["src/api/entitlements.js"]) == {
        "src/api/entitlements.js": ENTITLEMENTS_V2
    }
    assert repo.read_files(history["base"], ["src/api/entitlements.js"], max_bytes=10) == {}


def test_blame_line_at_the_given_commit(history: dict) -> None:
    repo = GitRepo(history["repo"])
    assert repo.blame_line(history["merge"], "src/api/entitlements.js", 2) == history["feature_change"]
    assert repo.blame_line(history["merge"], "src/api/entitlements.js", 1) == history["base"]
    # Blame follows the asked commit, not the branch tip, where the file no longer exists.
    assert repo.blame_line(history["merge"], "src/features/PaidFeatures.js", 4) == history["base"]
    assert repo.blame_line(history["delete"], "src/features/PaidFeatures.js", 4) is None
    assert repo.blame_line(history["merge"], "src/api/entitlements.js", 99) is None
    assert repo.blame_line(history["merge"], "src/util/formatting.js", 1) == history["base"]


def test_is_ancestor(history: dict) -> None:
    repo = GitRepo(history["repo"])
    assert repo.is_ancestor(history["base"], history["merge"])
    assert repo.is_ancestor(history["feature_change"], history["merge"])
    assert not repo.is_ancestor(history["main_change"], history["feature_change"])
    with pytest.raises(GitError):
        repo.is_ancestor("deadbeef" * 5, history["merge"])


def test_long_patch_is_capped_but_counts_stay_exact(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    write(tmp_path, "big.js", "")
    commit(tmp_path, "empty", 1_700_000_000)
    lines = [f"export const value{i} = {i}; // padding padding padding padding\n" for i in range(3000)]
    write(tmp_path, "big.js", "".join(lines))
    sha = commit(tmp_path, "big", 1_700_000_100)
    [change] = GitRepo(tmp_path).commit(sha).files
    assert change.additions == 3000
    assert change.patch_truncated
    assert len(change.patch) <= PATCH_CAP_BYTES


def test_timeout_surfaces_as_git_error(history: dict) -> None:
    with pytest.raises(GitError, match="timed out"):
        GitRepo(history["repo"], timeout=0.000001).commits_between(None, "main")
