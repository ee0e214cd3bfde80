"""Releases, commits, changed files and deploys: the narrow set of queries the rest goes through.

Callers own the transaction: functions here add and flush, never commit. Commits belong to a project
(`commits` is unique on (project_id, sha)); a release spans projects of one organisation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, delete, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from detector.errors import NotFound
from detector.store.dialect import upsert_insert
from detector.store.models import (
    Commit,
    CommitFile,
    Deploy,
    DeployCommit,
    Project,
    Release,
    ReleaseCommit,
    ReleaseProject,
)
from detector.times import iso_utc

if TYPE_CHECKING:  # the records are plain values; the store never imports upwards at run time
    from detector.deploys.records import CommitRecord, FileRecord

# -- releases ---------------------------------------------------------------------------------------


def find_release(session: Session, *, org: str, version: str) -> Release | None:
    return session.scalar(select(Release).where(Release.org == org, Release.version == version))


def get_release(session: Session, *, org: str, version: str) -> Release:
    """The release `version` of `org`; `NotFound` naming both when there is none."""
    release = find_release(session, org=org, version=version)
    if release is None:
        raise NotFound(f"release {version!r} not found in organization {org!r}")
    return release


def upsert_release(
    session: Session,
    *,
    org: str,
    version: str,
    project_ids: Iterable[int] = (),
    ref: str | None = None,
    url: str | None = None,
    date_started: datetime | None = None,
    date_released: datetime | None = None,
    now: datetime | None = None,
) -> tuple[Release, bool]:
    """Create the release or update the fields given (None leaves a field as it is); link projects.

    Returns (release, created). Safe against a concurrent creator of the same version.
    """
    release = find_release(session, org=org, version=version)
    created = False
    if release is None:
        stmt = (
            upsert_insert(session, Release)
            .values(org=org, version=version, date_created=now or datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=["org", "version"])
        )
        created = bool(session.execute(stmt).rowcount)
        release = get_release(session, org=org, version=version)
    for name, value in (
        ("ref", ref),
        ("url", url),
        ("date_started", date_started),
        ("date_released", date_released),
    ):
        if value is not None:
            setattr(release, name, value)
    link_release_projects(session, release_id=release.id, project_ids=project_ids)
    session.flush()
    return release, created


def link_release_projects(session: Session, *, release_id: int, project_ids: Iterable[int]) -> None:
    ids = sorted(set(project_ids))
    if not ids:
        return
    stmt = (
        upsert_insert(session, ReleaseProject)
        .values([{"release_id": release_id, "project_id": pid} for pid in ids])
        .on_conflict_do_nothing(index_elements=["release_id", "project_id"])
    )
    session.execute(stmt)


def release_projects(session: Session, *, release_id: int) -> list[Project]:
    return list(
        session.scalars(
            select(Project)
            .join(ReleaseProject, ReleaseProject.project_id == Project.id)
            .where(ReleaseProject.release_id == release_id)
            .order_by(Project.id)
        )
    )


def previous_release_with_commits(session: Session, *, release: Release) -> Release | None:
    """The newest release of the same organisation created before `release`, sharing a project with
    it and having commits (what sentry-cli asks for before `set-commits`)."""
    projects = select(ReleaseProject.project_id).where(ReleaseProject.release_id == release.id)
    with_commits = select(ReleaseCommit.release_id).distinct()
    stmt = (
        select(Release)
        .join(ReleaseProject, ReleaseProject.release_id == Release.id)
        .where(
            Release.org == release.org,
            Release.id != release.id,
            Release.date_created <= release.date_created,
            ReleaseProject.project_id.in_(projects),
            Release.id.in_(with_commits),
        )
        .order_by(Release.date_created.desc(), Release.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


@dataclass(frozen=True)
class ReleaseStats:
    """What the Sentry release object reports about commits and deploys."""

    commit_count: int
    last_commit: Commit | None
    deploy_count: int
    last_deploy: Deploy | None
    authors: list[tuple[str, str]]


def release_stats(session: Session, *, release: Release) -> ReleaseStats:
    # Commits are stored once per project; a release over two projects counts each sha once.
    rows = session.execute(
        select(Commit)
        .join(ReleaseCommit, ReleaseCommit.commit_id == Commit.id)
        .where(ReleaseCommit.release_id == release.id)
        .order_by(ReleaseCommit.position.desc(), Commit.id)
    ).scalars()
    by_sha: dict[str, Commit] = {}
    for commit in rows:
        by_sha.setdefault(commit.sha, commit)
    commits = list(by_sha.values())
    authors = list(dict.fromkeys((c.author_name, c.author_email) for c in commits if c.author_email))
    deploys = release_deploys(session, release=release)
    return ReleaseStats(
        commit_count=len(commits),
        last_commit=commits[0] if commits else None,
        deploy_count=len(deploys),
        last_deploy=deploys[0] if deploys else None,
        authors=authors,
    )


def release_deploys(session: Session, *, release: Release) -> list[Deploy]:
    """Deploys of the release, newest first, one per (environment, dedupe key) across its projects."""
    rows = session.scalars(
        select(Deploy)
        .join(Project, Project.id == Deploy.project_id)
        .join(ReleaseProject, ReleaseProject.project_id == Project.id)
        .where(ReleaseProject.release_id == release.id, Deploy.release == release.version)
        .order_by(Deploy.deployed_at.desc(), Deploy.id.desc())
    )
    seen: set[tuple[str, str]] = set()
    result: list[Deploy] = []
    for deploy in rows:
        key = (deploy.environment, deploy.dedupe_key)
        if key not in seen:
            seen.add(key)
            result.append(deploy)
    return result


# -- commits ----------------------------------------------------------------------------------------


def upsert_commits(session: Session, *, project_id: int, commits: Sequence[CommitRecord]) -> list[int]:
    """Store `commits` for the project and return their ids in the given order.

    A known commit keeps what it has unless the new record knows more: missing message/author/time
    are filled in, and files are replaced when the new record is enriched (diffs from the repository)
    and the stored one is not, or when the stored one has no files at all.
    """
    if not commits:
        return []
    unique = list({c.sha: c for c in commits}.values())
    stmt = (
        upsert_insert(session, Commit)
        .values(
            [
                {
                    "project_id": project_id,
                    "sha": c.sha,
                    "repository": c.repository,
                    "message": c.message,
                    "author_name": c.author_name,
                    "author_email": c.author_email,
                    "timestamp": c.timestamp,
                    "enriched": False,
                }
                for c in unique
            ]
        )
        .on_conflict_do_nothing(index_elements=["project_id", "sha"])
    )
    session.execute(stmt)
    stored = {
        c.sha: c
        for c in session.scalars(
            select(Commit).where(Commit.project_id == project_id, Commit.sha.in_([c.sha for c in unique]))
        )
    }
    counts = session.execute(
        select(CommitFile.commit_id, func.count())
        .where(CommitFile.commit_id.in_([c.id for c in stored.values()]))
        .group_by(CommitFile.commit_id)
    )
    file_counts = {commit_id: n for commit_id, n in counts}
    for record in unique:
        row = stored[record.sha]
        row.message = row.message or record.message
        row.author_name = row.author_name or record.author_name
        row.author_email = row.author_email or record.author_email
        row.repository = row.repository or record.repository
        if row.timestamp is None:
            row.timestamp = record.timestamp
        has_files = file_counts.get(row.id, 0) > 0
        if (record.enriched and not row.enriched) or (record.files and not has_files):
            replace_commit_files(session, commit=row, files=record.files, enriched=record.enriched)
    session.flush()
    return [stored[c.sha].id for c in commits]


def replace_commit_files(session: Session, *, commit: Commit, files: Sequence[FileRecord], enriched: bool) -> None:
    session.execute(delete(CommitFile).where(CommitFile.commit_id == commit.id))
    session.add_all(
        CommitFile(
            commit_id=commit.id,
            path=f.path,
            change_type=f.change_type,
            old_path=f.old_path,
            additions=f.additions,
            deletions=f.deletions,
            patch=f.patch,
        )
        for f in files
    )
    commit.enriched = enriched
    session.flush()


def find_commit(session: Session, *, project_id: int, sha: str) -> Commit | None:
    """The project's commit with this sha, or the only one it abbreviates."""
    sha = sha.lower()
    if len(sha) >= 40:
        return session.scalar(select(Commit).where(Commit.project_id == project_id, Commit.sha == sha))
    rows = list(
        session.scalars(select(Commit).where(Commit.project_id == project_id, Commit.sha.startswith(sha)).limit(2))
    )
    return rows[0] if len(rows) == 1 else None


def commits_by_id(session: Session, commit_ids: Sequence[int]) -> list[Commit]:
    rows = {c.id: c for c in session.scalars(select(Commit).where(Commit.id.in_(commit_ids)))}
    return [rows[i] for i in commit_ids if i in rows]


def set_release_commits(session: Session, *, release_id: int, commit_ids: Sequence[int], replace: bool = True) -> None:
    """Make `commit_ids` (oldest first) the release's commits; with `replace=False`, append those
    it does not have yet after the ones it has."""
    if replace:
        session.execute(delete(ReleaseCommit).where(ReleaseCommit.release_id == release_id))
        existing: list[int] = []
    else:
        existing = list(
            session.scalars(
                select(ReleaseCommit.commit_id)
                .where(ReleaseCommit.release_id == release_id)
                .order_by(ReleaseCommit.position)
            )
        )
    have = set(existing)
    start = len(existing)
    new = [cid for cid in dict.fromkeys(commit_ids) if cid not in have]
    session.add_all(
        ReleaseCommit(release_id=release_id, commit_id=cid, position=start + i) for i, cid in enumerate(new)
    )
    session.flush()


def release_commit_ids(session: Session, *, release_id: int, project_id: int) -> list[int]:
    """The release's commits of one project, oldest first."""
    return list(
        session.scalars(
            select(ReleaseCommit.commit_id)
            .join(Commit, Commit.id == ReleaseCommit.commit_id)
            .where(ReleaseCommit.release_id == release_id, Commit.project_id == project_id)
            .order_by(ReleaseCommit.position)
        )
    )


# -- deploys ----------------------------------------------------------------------------------------


def find_deploy_by_key(
    session: Session, *, project_id: int, release: str, environment: str, dedupe_key: str
) -> Deploy | None:
    return session.scalar(
        select(Deploy).where(
            Deploy.project_id == project_id,
            Deploy.release == release,
            Deploy.environment == environment,
            Deploy.dedupe_key == dedupe_key,
        )
    )


def previous_deploy(session: Session, *, project_id: int, environment: str, before: datetime) -> Deploy | None:
    """The latest deploy of the environment at or before `before` (ties: the later recorded)."""
    return session.scalar(
        select(Deploy)
        .where(
            Deploy.project_id == project_id,
            Deploy.environment == environment,
            Deploy.deployed_at <= before,
        )
        .order_by(Deploy.deployed_at.desc(), Deploy.id.desc())
        .limit(1)
    )


def deployed_commit_ids(session: Session, *, project_id: int, environment: str) -> set[int]:
    """Every commit already brought to the environment by an earlier deploy."""
    return set(
        session.scalars(
            select(DeployCommit.commit_id)
            .join(Deploy, Deploy.id == DeployCommit.deploy_id)
            .where(Deploy.project_id == project_id, Deploy.environment == environment)
        )
    )


def insert_deploy(
    session: Session,
    *,
    project_id: int,
    release: str,
    environment: str,
    name: str | None,
    url: str | None,
    sha: str | None,
    date_started: datetime | None,
    date_finished: datetime | None,
    deployed_at: datetime,
    source: str,
    dedupe_key: str,
    commit_ids: Sequence[int],
    now: datetime | None = None,
) -> Deploy | None:
    """Insert the deploy and its commits (oldest first); None if a deploy with the same dedupe key
    was stored concurrently (the caller then reads that one)."""
    deploy = Deploy(
        project_id=project_id,
        release=release,
        environment=environment,
        name=name,
        url=url,
        sha=sha,
        date_started=date_started,
        date_finished=date_finished,
        deployed_at=deployed_at,
        source=source,
        dedupe_key=dedupe_key,
        created_at=now or datetime.now(UTC),
    )
    try:
        with session.begin_nested():
            session.add(deploy)
            session.flush()
    except IntegrityError:
        return None
    session.add_all(
        DeployCommit(deploy_id=deploy.id, commit_id=cid, position=i) for i, cid in enumerate(dict.fromkeys(commit_ids))
    )
    session.flush()
    return deploy


def deploy_commit_ids(session: Session, *, deploy_id: int) -> list[int]:
    return list(
        session.scalars(
            select(DeployCommit.commit_id).where(DeployCommit.deploy_id == deploy_id).order_by(DeployCommit.position)
        )
    )


# -- read side --------------------------------------------------------------------------------------


def list_deploys(
    session: Session,
    *,
    project_id: int,
    environment: str | None = None,
    release: str | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int = 50,
    include_commits: bool = True,
) -> list[dict[str, Any]]:
    """Deploys newest first (by `deployed_at`, then id), up to limit+1 rows so the caller can tell
    whether there is a next page; `after` is the (deployed_at, id) of the last row already shown."""
    stmt = select(Deploy).where(Deploy.project_id == project_id)
    if environment:
        stmt = stmt.where(Deploy.environment == environment)
    if release:
        stmt = stmt.where(Deploy.release == release)
    if after is not None:
        stmt = stmt.where(tuple_(Deploy.deployed_at, Deploy.id) < tuple_(after[0], after[1]))
    deploys = list(session.scalars(stmt.order_by(Deploy.deployed_at.desc(), Deploy.id.desc()).limit(limit + 1)))
    commits = commits_for_deploys(session, [d.id for d in deploys], include_patch=False) if include_commits else {}
    return [deploy_as_dict(d, commits.get(d.id, [])) for d in deploys]


def get_deploy(session: Session, *, project_id: int, deploy_id: int, include_patch: bool = False) -> dict[str, Any]:
    deploy = session.get(Deploy, deploy_id)
    if deploy is None or deploy.project_id != project_id:
        raise NotFound(f"no deploy {deploy_id} in this project")
    commits = commits_for_deploys(session, [deploy.id], include_patch=include_patch)
    return deploy_as_dict(deploy, commits.get(deploy.id, []))


def commits_for_deploys(
    session: Session, deploy_ids: Sequence[int], *, include_patch: bool
) -> dict[int, list[dict[str, Any]]]:
    """Each deploy's commits, oldest first, with their files (and hunks when `include_patch`)."""
    if not deploy_ids:
        return {}
    # Plain rows of the columns shown (a list of deploys has hundreds of commits).
    rows = session.execute(
        select(
            DeployCommit.deploy_id,
            Commit.id,
            Commit.sha,
            Commit.message,
            Commit.author_name,
            Commit.author_email,
            Commit.timestamp,
            Commit.repository,
            Commit.enriched,
        )
        .join(Commit, Commit.id == DeployCommit.commit_id)
        .where(DeployCommit.deploy_id.in_(deploy_ids))
        .order_by(DeployCommit.deploy_id, DeployCommit.position)
    ).all()
    files = files_for_commits(session, {row.id for row in rows}, include_patch=include_patch)
    result: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        result.setdefault(row.deploy_id, []).append(commit_as_dict(row, files.get(row.id, [])))
    return result


def files_for_commits(
    session: Session, commit_ids: Iterable[int], *, include_patch: bool
) -> dict[int, list[dict[str, Any]]]:
    ids = list(commit_ids)
    if not ids:
        return {}
    result: dict[int, list[dict[str, Any]]] = {}
    # Plain rows of the columns shown, not ORM objects: a list of deploys has hundreds of files, and
    # the patches (the bulk of the table) are read only when asked for.
    columns = [CommitFile.path, CommitFile.change_type, CommitFile.old_path, CommitFile.additions]
    columns += [CommitFile.deletions, *([CommitFile.patch] if include_patch else [])]
    names = [column.key for column in columns]
    query = select(CommitFile.commit_id, *columns).where(CommitFile.commit_id.in_(ids)).order_by(CommitFile.id)
    for commit_id, *values in session.execute(query):
        result.setdefault(commit_id, []).append(dict(zip(names, values, strict=True)))
    return result


def commit_as_dict(commit: Commit | Row[Any], files: list[dict[str, Any]]) -> dict[str, Any]:
    """A commit (the model or a row with its columns) as the API shows it."""
    return {
        "sha": commit.sha,
        "message": commit.message,
        "author": {"name": commit.author_name, "email": commit.author_email},
        "timestamp": iso_utc(commit.timestamp),
        "repository": commit.repository,
        "enriched": commit.enriched,
        "files": files,
    }


def deploy_as_dict(deploy: Deploy, commits: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": deploy.id,
        "project_id": deploy.project_id,
        "release": deploy.release,
        "environment": deploy.environment,
        "name": deploy.name,
        "url": deploy.url,
        "sha": deploy.sha,
        "source": deploy.source,
        "date_started": _iso(deploy.date_started),
        "date_finished": _iso(deploy.date_finished),
        "deployed_at": _iso(deploy.deployed_at),
        "created_at": _iso(deploy.created_at),
        "commit_count": len(commits),
        "commits": commits,
    }


def _iso(value: datetime | None) -> str | None:
    return iso_utc(value)
