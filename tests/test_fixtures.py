"""The tests' fixtures ship in the repository, so a fresh clone runs every test (issue 16, item 7)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OWN_FIXTURES = ROOT / "tests" / "fixtures"


def referenced_fixture_files() -> set[str]:
    """Every `fixtures_dir / "folder" / "file"` a test names literally, as "folder/file"."""
    pattern = re.compile(r'fixtures_dir\s*/\s*"([\w.-]+)"\s*/\s*"([\w.-]+)"')
    found: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        if path.resolve() == Path(__file__).resolve():
            continue
        for folder, name in pattern.findall(path.read_text()):
            found.add(f"{folder}/{name}")
    return found


def test_every_fixture_a_test_names_is_in_tests_fixtures() -> None:
    names = referenced_fixture_files()
    assert len(names) >= 8, names  # the scan must find the suite's real references
    missing = sorted(n for n in names if not (OWN_FIXTURES / n).is_file())
    assert missing == []
    # the envelope examples and their expectations travel together
    expected = json.loads((OWN_FIXTURES / "envelope-spec" / "expected.json").read_text())
    assert {p.name for p in (OWN_FIXTURES / "envelope-spec").glob("*.bin")} <= set(expected["expected_items"])


def test_the_fixtures_are_tracked_by_git() -> None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        assert OWN_FIXTURES.is_dir()  # an exported tree (sdist, tarball): the files alone must be there
        return
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "tests/fixtures"], capture_output=True, text=True, check=True
    ).stdout.split()
    for name in referenced_fixture_files():
        assert f"tests/fixtures/{name}" in tracked, name
    assert "tests/fixtures/README.md" in tracked


def test_the_default_is_the_repository_copy_and_a_missing_copy_fails_not_skips(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DETECTOR_FIXTURES"}
    probe = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    probe.append("tests/sources/test_sentry_pull_mapping.py")
    ok = subprocess.run(probe, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert ok.returncode == 0, ok.stdout[-2000:]
    assert "skipped" not in ok.stdout and " passed" in ok.stdout

    gone = subprocess.run(
        [*probe, "-x"],
        cwd=ROOT,
        env={**env, "DETECTOR_FIXTURES": str(tmp_path / "nowhere")},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert gone.returncode != 0
    assert "test fixtures not found" in gone.stdout and "skipped" not in gone.stdout


@pytest.mark.parametrize("name", ["README.md"])
def test_the_fixtures_keep_their_provenance(name: str) -> None:
    readme = (OWN_FIXTURES / name).read_text()
    for folder in ("real-clients", "envelope-spec", "github-webhooks", "sentry-api"):
        assert f"## {folder}/" in readme
    assert "MIT" in readme  # the licence of the GitHub webhook examples
