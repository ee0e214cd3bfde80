"""`detector deploy` and `detector project github-secret`, registered on the main app by `register`.

The commands import their helpers from `detector.cli` when they run, not at import time, because
`detector.cli` imports this module to register them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from typer._click.exceptions import MissingParameter  # typer vendors click

from detector.errors import DetectorError

DEPLOY_HELP = (
    "Record a deploy and the commits it brought, read from a local clone.\n\n"
    "The commits are those between the previous deploy's sha in this environment (or --from) and "
    "--sha; a first deploy takes the last 20. Sending the same deploy twice records it once."
)


def deploy_command(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", help="Project slug.")] = None,
    release: Annotated[str | None, typer.Option("--release", help="Release version, as the SDK reports it.")] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Environment, e.g. production.")
    ] = None,
    sha: Annotated[str | None, typer.Option("--sha", help="The deployed commit (sha, branch or tag).")] = None,
    finished: Annotated[
        str | None,
        typer.Option("--finished", help="When the deploy finished: ISO 8601 or unix seconds (default: now)."),
    ] = None,
    started: Annotated[
        str | None, typer.Option("--started", help="When the deploy started: ISO 8601 or unix seconds.")
    ] = None,
    repo: Annotated[
        str | None, typer.Option("--repo", help="Local clone to read (default: the project's linked one).")
    ] = None,
    from_sha: Annotated[
        str | None, typer.Option("--from", help="Start of the range (default: the previous deploy's sha).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the deploy as one JSON object.")] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="DETECTOR_URL",
            help="Record it over HTTP at this detector (commits read from --repo, default .) instead of the database.",
        ),
    ] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="DETECTOR_TOKEN", help="API token for --url.")] = None,
) -> None:
    from detector.cli import fail, load_settings, parse_when, session_factory

    if ctx.invoked_subcommand is not None:
        return  # `deploy verify`: options belong to the subcommand
    # Optional to click only so that `deploy verify` parses; recording a deploy needs each of them.
    for name, value in (("--project", project), ("--release", release), ("--environment", environment), ("--sha", sha)):
        if value is None:
            raise MissingParameter(ctx=ctx, param_hint=f"'{name}'", param_type="option")
    assert project is not None and release is not None and environment is not None and sha is not None
    if url is not None:
        _deploy_over_http(
            url, token, project=project, release=release, environment=environment, sha=sha, repo=repo or ".",
            from_sha=from_sha, started=started, finished=finished, as_json=as_json,
        )  # fmt: skip
        return
    from detector.deploys.service import record_deploy
    from detector.sources.git_repo import GitError, GitRepo
    from detector.store.db import transaction
    from detector.store.deploys import get_deploy
    from detector.store.projects import get_project_by_slug

    settings = load_settings()
    factory = session_factory(settings)
    now = datetime.now(UTC)
    try:
        with transaction(factory) as session:
            target = get_project_by_slug(session, project)
            repo_path = repo or target.repo_path
            if not repo_path:
                raise fail(
                    f"project {project!r} has no linked repository: pass --repo PATH, "
                    f"or link one with `detector project set-repo {project} PATH`"
                )
            git = GitRepo(repo_path)
            try:
                full_sha = git.resolve(sha)
                full_from = git.resolve(from_sha) if from_sha else None
            except GitError as exc:
                raise fail(f"{exc}") from exc
            deploy = record_deploy(
                session,
                project=target,
                release=release,
                environment=environment,
                date_started=None if started is None else parse_when(started, name="--started"),
                date_finished=None if finished is None else parse_when(finished, name="--finished"),
                sha=full_sha,
                from_sha=full_from,
                repo=git,
                source="cli",
                require_known_sha=True,
                now=now,
            )
            created = deploy.created_at == now
            detail = get_deploy(session, project_id=target.id, deploy_id=deploy.id)
    except DetectorError as exc:
        raise fail(str(exc)) from exc
    _print_deploy(detail, created=created, as_json=as_json)


def _deploy_over_http(
    url: str,
    token: str | None,
    *,
    project: str,
    release: str,
    environment: str,
    sha: str,
    repo: str,
    from_sha: str | None,
    started: str | None,
    finished: str | None,
    as_json: bool,
) -> None:
    from detector.cli import fail, parse_when
    from detector.remote import Remote
    from detector.sources.git_repo import GitError, GitRepo

    if not token:
        raise fail("--url needs an API token: --token or DETECTOR_TOKEN (from `detector token create`)")
    try:
        detail, created = Remote(url, token).record_deploy(
            project=project, release=release, environment=environment, repo=GitRepo(repo), sha=sha,
            from_sha=from_sha,
            started=None if started is None else parse_when(started, name="--started"),
            finished=None if finished is None else parse_when(finished, name="--finished"),
        )  # fmt: skip
    except GitError as exc:
        raise fail(f"--repo {repo}: {exc}") from exc
    except DetectorError as exc:
        raise fail(str(exc)) from exc
    _print_deploy(detail, created=created, as_json=as_json)


def github_secret_command(slug: Annotated[str, typer.Argument(metavar="SLUG", help="The project.")]) -> None:
    """Print the project's GitHub webhook secret (for X-Hub-Signature-256)."""
    from detector.cli import fail, load_settings, session_factory
    from detector.store.projects import get_project_by_slug

    settings = load_settings()
    factory = session_factory(settings)
    try:
        with factory() as session:
            secret = get_project_by_slug(session, slug).github_secret
    except DetectorError as exc:
        raise fail(str(exc)) from exc
    if not secret:
        raise fail(f"project {slug!r} has no github secret")
    typer.echo(secret)


def _print_deploy(detail: dict[str, Any], *, created: bool, as_json: bool) -> None:
    from detector.cli import echo_json

    if as_json:
        echo_json({**detail, "created": created})
        return
    verb = "recorded" if created else "already recorded:"
    typer.echo(
        f"{verb} deploy {detail['id']} of {detail['release']} to {detail['environment']} "
        f"at {detail['deployed_at']} ({detail['sha'][:12] if detail['sha'] else 'no sha'}), "
        f"{detail['commit_count']} commit(s)"
    )
    for commit in reversed(detail["commits"]):
        summary = commit["message"].split("\n", 1)[0]
        typer.echo(f"  {commit['sha'][:12]} {summary} ({len(commit['files'])} file(s))")


def register(app: typer.Typer, project_app: typer.Typer) -> None:
    """Add `deploy` (and `deploy verify`) to `app`, `github-secret` and `set-gate` to the `project` group."""
    from detector.cli_verify import MisuseExitsThree, set_gate_command, verify_command

    deploy_app = typer.Typer(help=DEPLOY_HELP)
    deploy_app.callback(invoke_without_command=True)(deploy_command)
    deploy_app.command("verify", cls=MisuseExitsThree)(verify_command)
    app.add_typer(deploy_app, name="deploy")
    project_app.command("github-secret")(github_secret_command)
    project_app.command("set-gate")(set_gate_command)
