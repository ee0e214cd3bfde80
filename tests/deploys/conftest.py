"""A real git history shared by the deploy tests of a module (the code under test only reads it)."""

from __future__ import annotations

import pytest

from tests.deploys.gitrepos import History, build_history


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(tmp_path_factory.mktemp("repo") / "web")
