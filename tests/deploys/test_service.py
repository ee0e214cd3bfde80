"""record_deploy and friends on a real database (SQLite or PostgreSQL) and a real git repository."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.deploys.records import CommitRecord, FileRecord
from detector.deploys.service import record_deploy, record_release_commits
from detector.errors import InvalidInput
from detector.store import deploys as store
from detector.store.db import transaction
from detector.store.leases import detection_lease_name
from detector.store.models import Deploy, Project, WorkerLease
from tests.deploys.gitrepos import History

T1 = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
T3 = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)


@pytest.fixture
def linked(factory: sessionmaker[Session], project: Project, history: History) -> Project:
    with transaction(factory) as session:
        row = session.get(Project, project.id)
        assert row is not None
        row.repo_path = str(history.path)
        return row


def deploy_detail(factory: sessionmaker[Session], project_id: int, deploy_id: int) -> dict:
    with factory() as session:
        return store.get_deploy(session, project_id=project_id, deploy_id=deploy_id, include_patch=True)


def test_git_ranges_between_deploys_include_the_merge_and_the_rename(
    factory: sessionmaker[Session], linked: Project, history: History
) -> None:
    with transaction(factory) as session:
        first = record_deploy(
            session, project=linked, release="web@1", environment="production",
            sha=history.v1, date_finished=T1, source="cli",
        )  # fmt: skip
        second = record_deploy(
            session, project=linked, release="web@2", environment="production",
            sha=history.v2[:10], date_finished=T2, source="cli",
        )  # fmt: skip
        first_id, second_id = first.id, second.id

    one = deploy_detail(factory, linked.id, first_id)
    assert [c["sha"] for c in one["commits"]] == [history.base, history.v1]
    two = deploy_detail(factory, linked.id, second_id)
    assert two["sha"] == history.v2
    assert two["deployed_at"] == T2.isoformat().replace("+00:00", "Z")
    shas = [c["sha"] for c in two["commits"]]
    assert set(shas) == {history.feature, history.main_fix, history.merge, history.v2}
    assert shas[-1] == history.v2
    by_sha = {c["sha"]: c for c in two["commits"]}
    rename = by_sha[history.feature]["files"]
    assert rename == [
        {
            "path": "src/util/formatting.js",
            "change_type": "R",
            "old_path": "src/util/format.js",
            "additions": 0,
            "deletions": 0,
            "patch": "",
        }
    ]
    fix = by_sha[history.main_fix]
    assert fix["message"] == "Return entitlements as an object"
    assert fix["author"] == {"name": "Dana", "email": "dana@example.com"}
    assert fix["files"][0]["path"] == "src/api/entitlements.js"
    assert fix["files"][0]["additions"] == 1 and fix["files"][0]["deletions"] == 1
    assert "+  return { items: [] };" in fix["files"][0]["patch"]
    # The merge's diff is against its first parent (main): it brings the rename.
    assert [f["path"] for f in by_sha[history.merge]["files"]] == ["src/util/formatting.js"]


def test_the_same_deploy_twice_is_stored_once_and_the_hook_runs_once_after_commit(
    factory: sessionmaker[Session], linked: Project, history: History
) -> None:
    calls: list[tuple[int, int]] = []
    seen_by_hook: list[int] = []

    def hook(project_id: int, deploy_id: int) -> None:
        calls.append((project_id, deploy_id))
        with factory() as other:  # a new session must see the committed deploy
            seen_by_hook.append(other.scalar(select(func.count()).select_from(Deploy)) or 0)

    for _ in range(2):
        with transaction(factory) as session:
            record_deploy(
                session, project=linked, release="web@2", environment="production",
                sha=history.v2, source="cli", on_deploy=hook,
            )  # fmt: skip
            assert calls == [] or len(calls) == 1  # never inside the transaction
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Deploy)) == 1
    assert len(calls) == 1 and calls[0][0] == linked.id
    assert seen_by_hook == [1]


def test_the_hook_is_not_called_when_the_transaction_rolls_back(
    factory: sessionmaker[Session], project: Project
) -> None:
    calls: list[tuple[int, int]] = []
    with pytest.raises(RuntimeError), transaction(factory) as session:
        record_deploy(
            session, project=project, release="web@1", environment="production",
            source="api", on_deploy=lambda p, d: calls.append((p, d)),
        )  # fmt: skip
        raise RuntimeError("abort")
    with transaction(factory) as session:
        session.execute(select(1))
    assert calls == []


def test_release_commits_sent_as_paths_are_enriched_and_deployed_once_per_environment(
    factory: sessionmaker[Session], linked: Project, history: History
) -> None:
    # What sentry-cli's set-commits sends: newest first, paths only.
    sent = [
        CommitRecord(sha=history.v2, message="Add instrumentation", files=(FileRecord("src/instrument.js", "A"),)),
        CommitRecord(sha=history.main_fix, message="Return entitlements as an object",
                     files=(FileRecord("src/api/entitlements.js", "M"),)),
    ]  # fmt: skip
    with transaction(factory) as session:
        release, _ = store.upsert_release(session, org=linked.org, version="web@2", project_ids=[linked.id])
        assert record_release_commits(session, release=release, commits=sent, newest_first=True) == 2
        staging = record_deploy(
            session, project=linked, release="web@2", environment="staging", date_finished=T1, source="sentry-cli"
        )
        prod = record_deploy(
            session, project=linked, release="web@2", environment="production", date_finished=T2,
            source="sentry-cli",
        )  # fmt: skip
        again = record_deploy(
            session, project=linked, release="web@2", environment="production", date_finished=T3,
            source="sentry-cli",
        )  # fmt: skip
        ids = staging.id, prod.id, again.id
        assert prod.sha == history.v2  # the release's newest commit stands in for the missing sha

    staging_d, prod_d, again_d = (deploy_detail(factory, linked.id, i) for i in ids)
    assert [c["sha"] for c in staging_d["commits"]] == [history.main_fix, history.v2]
    assert [c["sha"] for c in prod_d["commits"]] == [history.main_fix, history.v2]
    assert again_d["commits"] == []  # nothing new reached production
    fix = prod_d["commits"][0]
    assert fix["enriched"] is True
    assert fix["files"][0]["additions"] == 1
    assert "return { items: [] }" in fix["files"][0]["patch"]


def test_without_a_repository_the_release_commits_minus_deployed_ones_are_used(
    factory: sessionmaker[Session], project: Project
) -> None:
    a = CommitRecord(sha="a" * 40, message="a", files=(FileRecord("a.js", "A"),))
    b = CommitRecord(sha="b" * 40, message="b", files=(FileRecord("b.js", "M"),))
    with transaction(factory) as session:
        r1, _ = store.upsert_release(session, org=project.org, version="web@1", project_ids=[project.id])
        record_release_commits(session, release=r1, commits=[a])
        d1 = record_deploy(session, project=project, release="web@1", environment="prod", date_finished=T1,
                           source="api")  # fmt: skip
        r2, _ = store.upsert_release(session, org=project.org, version="web@2", project_ids=[project.id])
        record_release_commits(session, release=r2, commits=[a, b])
        d2 = record_deploy(session, project=project, release="web@2", environment="prod", date_finished=T2,
                           source="api")  # fmt: skip
        ids = d1.id, d2.id
    assert [c["sha"] for c in deploy_detail(factory, project.id, ids[0])["commits"]] == ["a" * 40]
    second = deploy_detail(factory, project.id, ids[1])["commits"]
    assert [c["sha"] for c in second] == ["b" * 40]
    assert second[0]["files"] == [
        {"path": "b.js", "change_type": "M", "old_path": None, "additions": None, "deletions": None,
         "patch": None}
    ]  # fmt: skip


def test_explicit_commits_become_the_deploys_and_the_releases(factory: sessionmaker[Session], project: Project) -> None:
    c = CommitRecord(sha="c" * 40, message="c", files=(FileRecord("c.js", "D"),))
    with transaction(factory) as session:
        d = record_deploy(session, project=project, release="web@3", environment="prod", source="api",
                          commits=[c], sha="c" * 40)  # fmt: skip
        release = store.get_release(session, org=project.org, version="web@3")
        assert store.release_commit_ids(session, release_id=release.id, project_id=project.id) != []
        deploy_id = d.id
    detail = deploy_detail(factory, project.id, deploy_id)
    assert detail["source"] == "api" and detail["sha"] == "c" * 40
    assert detail["commits"][0]["files"][0]["change_type"] == "D"


def test_unknown_sha_is_refused_when_required_and_tolerated_otherwise(
    factory: sessionmaker[Session], linked: Project
) -> None:
    with pytest.raises(InvalidInput, match="unknown sha"), transaction(factory) as session:
        record_deploy(session, project=linked, release="web@9", environment="prod", source="api",
                      sha="deadbeef" * 5, require_known_sha=True)  # fmt: skip
    with transaction(factory) as session:
        d = record_deploy(session, project=linked, release="web@9", environment="prod", source="github",
                          sha="deadbeef" * 5)  # fmt: skip
        assert d.sha == "deadbeef" * 5


def test_bad_deploys_are_refused(factory: sessionmaker[Session], project: Project) -> None:
    cases: list[tuple[dict, str]] = [
        ({"release": " ", "environment": "prod"}, "release is required"),
        ({"release": "web@1", "environment": ""}, "environment is required"),
        ({"release": "web@1", "environment": "x" * 65}, "at most 64"),
        ({"release": "web@1", "environment": "prod", "date_started": T2, "date_finished": T1}, "finished before"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidInput, match=message), transaction(factory) as session:
            record_deploy(session, project=project, source="api", **kwargs)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Deploy)) == 0


def test_branch_names_resolve_to_the_full_sha_and_identify_the_same_deploy(
    factory: sessionmaker[Session], linked: Project, history: History
) -> None:
    with transaction(factory) as session:
        by_branch = record_deploy(
            session, project=linked, release="web@2", environment="prod", sha="main", source="api"
        )
        by_sha = record_deploy(
            session, project=linked, release="web@2", environment="prod", sha=history.v2.upper(), source="api"
        )
        assert by_branch.sha == history.v2
        assert by_sha.id == by_branch.id


def test_a_new_deploy_requests_a_detection_pass_and_a_repeat_does_not(
    factory: sessionmaker[Session], project: Project
) -> None:
    with transaction(factory) as session:
        record_deploy(session, project=project, release="web@1", environment="prod", source="api", now=T1)
    with transaction(factory) as session:
        record_deploy(session, project=project, release="web@1", environment="prod", source="api", now=T2)
    with factory() as session:
        lease = session.get(WorkerLease, detection_lease_name(project.id))
        assert lease is not None and lease.requested_at == T1
