"""Recording releases, commits and deploys: the one path every source goes through.

sentry-cli (`api/routes/sentry_releases.py`), `detector deploy`, `POST /api/v1/projects/{slug}/deploys`,
GitHub webhooks and Sentry pull mode all call `record_deploy` and `record_commits`, so a deploy means
the same thing whichever way it arrived. The caller owns the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from detector.deploys import ranges
from detector.deploys.records import CommitRecord, commit_from_git, enrich_commit
from detector.errors import InvalidInput
from detector.sources.git_repo import GitError, GitRepo
from detector.store import deploys as store
from detector.store.leases import request_detection
from detector.store.models import Commit, Deploy, Project, Release

log = logging.getLogger(__name__)

DeployHook = Callable[[int, int], None]
"""Called with (project_id, deploy_id) once a new deploy is committed, e.g. to run detection."""

MAX_ENVIRONMENT_CHARS = 64
MAX_VERSION_CHARS = 250


def repo_for(project: Project) -> GitRepo | None:
    """The project's linked local clone, if it has one."""
    return GitRepo(project.repo_path) if project.repo_path else None


def record_deploy(
    session: Session,
    *,
    project: Project,
    release: str,
    environment: str,
    date_started: datetime | None = None,
    date_finished: datetime | None = None,
    name: str | None = None,
    url: str | None = None,
    sha: str | None = None,
    source: str,
    commits: Sequence[CommitRecord] | None = None,
    from_sha: str | None = None,
    repo: GitRepo | None = None,
    dedupe_key: str | None = None,
    require_known_sha: bool = False,
    on_deploy: DeployHook | None = None,
    now: datetime | None = None,
) -> Deploy:
    """Record that `release` went to `environment` of `project`, with the commits it brought.

    Idempotent: a report with the same `dedupe_key` (by default derived from sha, times, name and url;
    GitHub and pull mode pass the upstream deploy id) returns the stored deploy, and `on_deploy` is
    not called again. The release is created if needed and linked to the project.

    The deploy's commits are, in order of preference: `commits` as given; the linked repository's
    commits between `from_sha` (else the previous deploy's sha in this environment) and `sha`; the
    release's commits not yet deployed to this environment; the last `ranges.INITIAL_DEPTH` commits up
    to `sha`; the commit `sha` itself when an earlier push stored it. Commits that arrived as bare
    paths are enriched with diffs and line counts from the repository (`repo`, else the project's).

    `deployed_at` is `date_finished`, else `date_started`, else now. With `require_known_sha`, a `sha`
    or `from_sha` the repository does not have is `InvalidInput` instead of a logged warning.
    A new deploy also requests a detection pass for the project (`request_detection`, in the same
    transaction, so the request is as durable as the deploy). `on_deploy(project_id, deploy_id)`, for
    anything else, runs after the caller's transaction commits (never if it rolls back), so whatever it
    starts sees the deploy.
    """
    release = _clean(release, name="release", limit=MAX_VERSION_CHARS)
    environment = _clean(environment, name="environment", limit=MAX_ENVIRONMENT_CHARS)
    if date_started and date_finished and date_finished < date_started:
        raise InvalidInput("the deploy finished before it started: check dateStarted/dateFinished")
    now = now or datetime.now(UTC)
    when = ranges.deployed_at(date_started, date_finished, now)
    repo = repo or repo_for(project)
    sha = sha.strip() if sha else None
    git_sha = _resolve(repo, sha, what="sha", strict=require_known_sha) if repo and sha else None
    git_from = _resolve(repo, from_sha, what="from_sha", strict=require_known_sha) if repo and from_sha else None
    # A sha the repository resolved is full and canonical; one it could not is kept as sent, in
    # lowercase so it compares equal to the same commit reported elsewhere.
    sha = git_sha or (sha.lower() if sha else None)
    key = dedupe_key or ranges.dedupe_key(
        sha=sha, date_started=date_started, date_finished=date_finished, name=name, url=url
    )
    existing = store.find_deploy_by_key(
        session, project_id=project.id, release=release, environment=environment, dedupe_key=key
    )
    if existing is not None:
        return existing

    release_row, _ = store.upsert_release(session, org=project.org, version=release, project_ids=[project.id], now=now)
    previous = store.previous_deploy(session, project_id=project.id, environment=environment, before=when)
    start = ranges.range_start(git_from, previous.sha if previous else None, sha)
    if start and repo and start != git_from:
        start = _resolve(repo, start, what="previous deploy's sha", strict=False)
    deployed = store.deployed_commit_ids(session, project_id=project.id, environment=environment)
    undeployed = ranges.not_yet_deployed(
        store.release_commit_ids(session, release_id=release_row.id, project_id=project.id), deployed
    )
    head = store.find_commit(session, project_id=project.id, sha=sha) if sha else None
    kind = ranges.choose_commit_source(
        explicit=commits is not None,
        repo_available=git_sha is not None,
        sha=sha,
        range_start=start,
        release_has_undeployed=bool(undeployed),
        head_commit_known=head is not None,
    )
    commit_ids = _deploy_commit_ids(
        session,
        kind=kind,
        project=project,
        release=release_row,
        repo=repo,
        commits=commits,
        sha=sha,
        start=start,
        undeployed=undeployed,
        deployed=deployed,
        head=head,
    )
    if sha is None:
        # sentry-cli's deploys carry no sha: the release's newest commit is what went out, and it is
        # what the next deploy's git range starts from.
        release_ids = store.release_commit_ids(session, release_id=release_row.id, project_id=project.id)
        newest = store.commits_by_id(session, release_ids[-1:])
        sha = newest[0].sha if newest else None
    deploy = store.insert_deploy(
        session,
        project_id=project.id,
        release=release,
        environment=environment,
        name=name,
        url=url,
        sha=sha,
        date_started=date_started,
        date_finished=date_finished,
        deployed_at=when,
        source=source,
        dedupe_key=key,
        commit_ids=commit_ids,
        now=now,
    )
    if deploy is None:  # the same deploy was recorded concurrently
        raced = store.find_deploy_by_key(
            session, project_id=project.id, release=release, environment=environment, dedupe_key=key
        )
        assert raced is not None
        return raced
    log.info(
        "deploy %s of %s to %s recorded from %s with %d commits (%s)",
        deploy.id, release, environment, source, len(commit_ids), kind.value,
    )  # fmt: skip
    request_detection(session, project.id, now)  # a pass right after the deploy, in whichever worker is free
    if on_deploy is not None:
        _after_commit(session, lambda: on_deploy(project.id, deploy.id))
    return deploy


def record_commits(
    session: Session,
    *,
    project: Project,
    commits: Sequence[CommitRecord],
    repo: GitRepo | None = None,
) -> list[int]:
    """Store commits for the project, enriched from its repository where they lack diffs; their ids
    in the given order."""
    repo = repo or repo_for(project)
    return store.upsert_commits(session, project_id=project.id, commits=enrich_records(commits, repo))


def record_release_commits(
    session: Session,
    *,
    release: Release,
    commits: Sequence[CommitRecord],
    projects: Sequence[Project] | None = None,
    newest_first: bool = False,
) -> int:
    """Make `commits` the release's commits for each of its projects (or `projects`), replacing what
    it had, as Sentry's `set-commits` does. sentry-cli lists newest first (`newest_first=True`); the
    store keeps oldest first. Returns the number of distinct commits."""
    ordered = list(reversed(commits)) if newest_first else list(commits)
    targets = list(projects) if projects is not None else store.release_projects(session, release_id=release.id)
    all_ids: list[int] = []
    for project in targets:
        all_ids += record_commits(session, project=project, commits=ordered)
    store.set_release_commits(session, release_id=release.id, commit_ids=all_ids, replace=True)
    return len({c.sha for c in ordered})


@dataclass(frozen=True)
class RefRange:
    """A `refs[]` entry of sentry-cli: the release's head commit and the previous release's."""

    repository: str
    commit: str
    previous_commit: str | None = None


def record_release_refs(session: Session, *, release: Release, refs: Sequence[RefRange]) -> int:
    """Read each ref's range from the linked repository of every project of the release and add the
    commits to the release (Sentry would ask GitHub; we read the local clone). Refs the repository
    cannot resolve are skipped with a warning. Returns how many commits were added."""
    added = 0
    for project in store.release_projects(session, release_id=release.id):
        repo = repo_for(project)
        if repo is None:
            continue
        for ref in refs:
            try:
                infos = repo.commits_between(ref.previous_commit, ref.commit, max_count=ranges.MAX_RANGE_COMMITS)
            except GitError as exc:
                log.warning("release %s: cannot read ref %s: %s", release.version, ref.commit, exc)
                continue
            records = [commit_from_git(i, repository=ref.repository) for i in infos]
            ids = store.upsert_commits(session, project_id=project.id, commits=records)
            store.set_release_commits(session, release_id=release.id, commit_ids=ids, replace=False)
            added += len(ids)
    return added


def enrich_records(commits: Sequence[CommitRecord], repo: GitRepo | None) -> list[CommitRecord]:
    """`commits` with files, diffs and counts read from `repo` where they were sent without them.

    A commit the repository does not have (not fetched yet, another repository) stays as sent.
    """
    if repo is None:
        return list(commits)
    result = []
    for record in commits:
        if record.enriched:
            result.append(record)
            continue
        try:
            local = commit_from_git(repo.commit(record.sha), repository=record.repository)
        except GitError as exc:
            log.info("commit %s not enriched from %s: %s", record.sha[:12], repo.path, exc)
            result.append(record)
            continue
        result.append(enrich_commit(record, local))
    return result


def enrich_stored_commits(session: Session, *, commits: Sequence[Commit], repo: GitRepo | None) -> int:
    """Replace the files of stored commits that lack diffs with the repository's; how many changed."""
    if repo is None:
        return 0
    changed = 0
    for commit in commits:
        if commit.enriched:
            continue
        try:
            local = commit_from_git(repo.commit(commit.sha))
        except GitError as exc:
            log.info("commit %s not enriched from %s: %s", commit.sha[:12], repo.path, exc)
            continue
        store.replace_commit_files(session, commit=commit, files=local.files, enriched=True)
        changed += 1
    return changed


# -- internals --------------------------------------------------------------------------------------


def _deploy_commit_ids(
    session: Session,
    *,
    kind: ranges.CommitSource,
    project: Project,
    release: Release,
    repo: GitRepo | None,
    commits: Sequence[CommitRecord] | None,
    sha: str | None,
    start: str | None,
    undeployed: list[int],
    deployed: set[int],
    head: Commit | None,
) -> list[int]:
    Source = ranges.CommitSource
    if kind is Source.EXPLICIT:
        assert commits is not None
        ids = record_commits(session, project=project, commits=commits, repo=repo)
        store.set_release_commits(session, release_id=release.id, commit_ids=ids, replace=False)
        return ids
    if kind in (Source.GIT_RANGE, Source.GIT_RECENT):
        assert repo is not None and sha is not None
        depth = ranges.MAX_RANGE_COMMITS if kind is Source.GIT_RANGE else ranges.INITIAL_DEPTH
        try:
            infos = repo.commits_between(start if kind is Source.GIT_RANGE else None, sha, max_count=depth)
        except GitError as exc:
            log.warning("deploy of %s: cannot read commits from %s: %s", release.version, repo.path, exc)
            return undeployed
        ids = store.upsert_commits(session, project_id=project.id, commits=[commit_from_git(i) for i in infos])
        ids = ranges.not_yet_deployed(ids, deployed) if kind is Source.GIT_RECENT else ids
        store.set_release_commits(session, release_id=release.id, commit_ids=ids, replace=False)
        return ids
    if kind is Source.RELEASE:
        enrich_stored_commits(session, commits=store.commits_by_id(session, undeployed), repo=repo)
        return undeployed
    if kind is Source.HEAD_ONLY and head is not None and head.id not in deployed:
        return [head.id]
    return []


def _resolve(repo: GitRepo, rev: str, *, what: str, strict: bool) -> str | None:
    try:
        return repo.resolve(rev)
    except GitError as exc:
        if strict:
            raise InvalidInput(f"unknown {what} {rev!r}: {exc}") from exc
        log.warning("%s %s is not in %s; commits will not be read from git", what, rev, repo.path)
        return None


def _clean(value: str, *, name: str, limit: int) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidInput(f"{name} is required")
    if len(text) > limit or "\n" in text:
        raise InvalidInput(f"{name} {text[:40]!r}…: at most {limit} characters on one line")
    return text


_HOOKS_KEY = "detector.after_commit_hooks"


def _after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's outermost transaction commits; drop it if that rolls back.

    The listeners are installed once per session and keep their queue in `session.info`.
    """
    hooks: list[Callable[[], None]] | None = session.info.get(_HOOKS_KEY)
    if hooks is None:
        hooks = session.info[_HOOKS_KEY] = []
        event.listen(session, "after_commit", _run_hooks)
        event.listen(session, "after_soft_rollback", _drop_hooks)
    hooks.append(callback)


def _run_hooks(session: Session) -> None:
    pending = list(session.info.get(_HOOKS_KEY, []))
    session.info[_HOOKS_KEY] = []
    for hook in pending:
        # The deploy is committed whatever the hook does; a failing hook is logged, not raised
        # into the request or command that recorded it.
        try:
            hook()
        except Exception:
            log.exception("on_deploy hook failed")


def _drop_hooks(session: Session, previous_transaction: SessionTransaction) -> None:
    # A savepoint rolled back (a concurrent duplicate) leaves the outer transaction's hooks alone.
    if previous_transaction.parent is None:
        session.info[_HOOKS_KEY] = []
