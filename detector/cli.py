"""The `detector` command."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from detector.cli_demo import register as register_demo_command
from detector.cli_deploy import register as register_deploy_commands
from detector.cli_queue import register as register_queue_commands
from detector.config import Settings
from detector.errors import DetectorError
from detector.logs import configure_logging
from detector.store.db import make_engine, make_sessionmaker, safe_url, transaction, upgrade
from detector.store.projects import (
    create_project,
    create_token,
    get_project_by_slug,
    list_projects,
    list_tokens,
    project_as_dict,
)
from detector.store.scopes import ALL_SCOPES, parse_scopes, scopes_as_text
from detector.supervise import Supervisor, stop_all
from detector.times import iso_utc, json_default

app = typer.Typer(help="Deploy-aware error anomaly detector.", no_args_is_help=True, add_completion=False)
project_app = typer.Typer(help="Create and list projects.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for everything that is not intake.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(project_app, name="project")
app.add_typer(token_app, name="token")
app.add_typer(db_app, name="db")
register_deploy_commands(app, project_app)
register_demo_command(app)
register_queue_commands(app)

err = Console(stderr=True)
log = logging.getLogger("detector.cli")


def fail(message: str, code: int = 1) -> typer.Exit:
    # soft_wrap: long paths and URLs stay whole (rich would fold or elide them at the terminal width)
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise fail(f"invalid settings: {problems}") from exc


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and in-memory SQLite)."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return None if path in ("", ":memory:") or path.startswith("file:") else Path(path).resolve()


def _database_setting(settings: Settings) -> str:
    if "database_url" in settings.model_fields_set:
        return f"DETECTOR_DATABASE_URL={safe_url(settings.database_url)}"
    return "DETECTOR_DATABASE_URL is unset, so the default is ./detector.db in the current directory"


def ready_database(settings: Settings) -> None:
    """Create or upgrade the schema (`serve`, `worker`, `demo`, `db upgrade` only); a SQLite file is created
    in an existing directory only, so a mistyped path is an error; a bad URL or an unreachable server is a
    clear message, not a trace."""
    path = sqlite_file(settings.database_url)
    if path is not None and not path.parent.is_dir():
        raise fail(
            f"cannot create the database {path}: directory {path.parent} does not exist ({_database_setting(settings)})"
        )
    try:
        upgrade(settings.database_url)
    except DetectorError as exc:
        raise fail(str(exc)) from exc


def existing_database(settings: Settings) -> None:
    """Every command but `serve`, `worker`, `demo` and `db upgrade` works on a database that exists and has
    the detector's schema: run from the wrong directory or with a mistyped URL it says so instead of
    creating an empty database (or adding tables to another application's)."""
    create_hint = "`detector serve`, `detector demo` or `detector db upgrade` creates one"
    path = sqlite_file(settings.database_url)
    if path is not None and not path.is_file():
        raise fail(f"no database at {path} ({_database_setting(settings)}); {create_hint}")
    if not _has_schema(settings):
        where = str(path) if path is not None else safe_url(settings.database_url)
        raise fail(f"the database {where} has no detector schema yet ({_database_setting(settings)}); {create_hint}")
    ready_database(settings)  # an existing database is brought up to date


def _has_schema(settings: Settings) -> bool:
    path = sqlite_file(settings.database_url)
    if path is not None:
        # read-only and without make_engine, which would attach (and so create) the queue file beside it
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projects'")
                return found.fetchone() is not None
        except sqlite3.DatabaseError as exc:
            raise fail(f"{path} is not a SQLite database ({_database_setting(settings)}): {exc}") from exc
    if settings.database_url.startswith("sqlite"):
        return True  # in memory: nothing to find
    try:
        engine = make_engine(settings.database_url)
        try:
            return inspect(engine).has_table("projects")
        finally:
            engine.dispose()
    except (DetectorError, OperationalError) as exc:
        reason = getattr(exc, "orig", exc)
        raise fail(f"cannot reach the database at {safe_url(settings.database_url)}: {reason}") from exc


def session_factory(settings: Settings) -> sessionmaker[Session]:
    """Sessions on the configured database, which must exist (see `existing_database`)."""
    existing_database(settings)
    return make_sessionmaker(make_engine(settings.database_url))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database or bring its schema up to date."""
    settings = load_settings()
    ready_database(settings)
    typer.echo(f"database at {safe_url(settings.database_url)} is up to date")


@project_app.command("create")
def project_create(
    slug: Annotated[str, typer.Argument(metavar="SLUG", help="Lowercase letters, digits, '-' and '_'.")],
    platform: Annotated[str, typer.Option(help="The SDK platform, e.g. javascript or python.")] = "javascript",
    org: Annotated[str | None, typer.Option(help="Organisation slug (default: DETECTOR_ORG).")] = None,
    repo: Annotated[str | None, typer.Option(help="Path of a local clone of the project's repository.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a project and print its DSN."""
    settings = load_settings()
    factory = session_factory(settings)
    try:
        with transaction(factory) as session:
            if repo is not None:
                from detector.sources.git_repo import GitError, GitRepo

                try:
                    GitRepo(repo).resolve("HEAD")
                except GitError as exc:
                    raise fail(f"--repo {repo}: {exc}") from exc
            project = create_project(session, slug=slug, org=org or settings.org, platform=platform, repo_path=repo)
            data = project_as_dict(project, settings.public_url)
    except DetectorError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        echo_json(data)
    else:
        typer.echo(f"created project {data['slug']} (id {data['id']})\nDSN: {data['dsn']}")


@project_app.command("list")
def project_list(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False) -> None:
    """List projects with their DSNs."""
    settings = load_settings()
    factory = session_factory(settings)
    with factory() as session:
        rows = [project_as_dict(p, settings.public_url) for p in list_projects(session)]
    if as_json:
        echo_json(rows)
        return
    table = Table("id", "slug", "org", "platform", "dsn", "repository")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["slug"]),
            str(row["org"]),
            str(row["platform"]),
            str(row["dsn"]),
            str(row["repo_path"] or ""),
        )
    Console().print(table)


@project_app.command("set-repo")
def project_set_repo(
    slug: Annotated[str, typer.Argument(metavar="SLUG", help="The project.")],
    path: Annotated[str, typer.Argument(metavar="PATH", help="A local clone of its repository.")],
) -> None:
    """Link a project to a local clone of its repository (for diffs, the import graph and blame)."""
    from detector.sources.git_repo import GitError, GitRepo

    settings = load_settings()
    factory = session_factory(settings)
    resolved = str(Path(path).resolve())
    try:
        GitRepo(resolved).resolve("HEAD")
    except GitError as exc:
        raise fail(f"{path}: {exc}") from exc
    try:
        with transaction(factory) as session:
            get_project_by_slug(session, slug).repo_path = resolved
    except DetectorError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"project {slug} now reads its repository at {resolved}")


@token_app.command("create")
def token_create(
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="What it may do, repeatable: ingest (source maps), read (the query API), deploy (releases, "
            "deploys, verdicts), admin (everything). Default: every scope.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create an API token (shown once)."""
    settings = load_settings()
    factory = session_factory(settings)
    try:
        scopes = parse_scopes(scope) if scope else ALL_SCOPES
        with transaction(factory) as session:
            token = create_token(session, label=label, scopes=scopes)
    except DetectorError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        echo_json({"token": token, "scopes": scopes_as_text(scopes).split()})
    else:
        typer.echo(token)


@token_app.command("list")
def token_list(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False) -> None:
    """List API tokens: id, label, scopes, creation time (a token itself is never shown again)."""
    settings = load_settings()
    with session_factory(settings)() as session:
        tokens = list_tokens(session)
    if as_json:
        echo_json(tokens)
        return
    table = Table("id", "label", "scopes", "created")
    for t in tokens:
        table.add_row(str(t["id"]), str(t["label"]), " ".join(t["scopes"]), str(t["created_at"]))  # type: ignore[arg-type]
    Console().print(table)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror} (is another server running there?)") from exc


def _listen(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening socket; with `reuse_port`, several processes each bind one and the kernel spreads
    connections over them (SO_REUSEPORT), which balances keep-alive clients better than one shared socket."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror} (is another server running there?)") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def derived_public_url(host: str, port: int) -> str:
    """The URL SDKs and sentry-cli should use when DETECTOR_PUBLIC_URL is unset: the address `serve` listens
    on; for a wildcard address, this machine's name (127.0.0.1 would only reach this machine)."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[bool, typer.Option(help="Run a worker beside the API.")] = True,
    worker_mode: Annotated[
        str, typer.Option(help="'process': the worker in a child process (own CPU); 'thread': in this process.")
    ] = "process",
    processes: Annotated[
        int, typer.Option(min=1, help="API processes sharing the port (intake scales with CPU cores).")
    ] = 1,
    api_child_of: Annotated[
        int | None, typer.Option(hidden=True, help="Set by `serve --processes`: one more API process.")
    ] = None,
) -> None:
    """Run the API (intake, Sentry web API subset, query API) and, by default, a worker beside it."""
    import shutil
    import tempfile

    import uvicorn

    from detector.http_server import ConnectionLimits, guarded_http_protocol

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    if worker_mode not in ("process", "thread"):
        raise fail("--worker-mode must be 'process' or 'thread'")
    if api_child_of is None:
        ready_database(settings)
        _check_port_free(host, port)
        if "public_url" not in settings.model_fields_set:
            # DSNs, alert links and sentry-cli's upload URL name the port actually served; children inherit it
            os.environ["DETECTOR_PUBLIC_URL"] = derived_public_url(host, port)
            settings = load_settings()
    metrics_dir: str | None = None
    if api_child_of is None and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # before anything imports prometheus_client: this process and its children then share their counters
        metrics_dir = tempfile.mkdtemp(prefix="detector-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    in_process = worker and worker_mode == "thread" and api_child_of is None
    os.environ["DETECTOR_SERVE_WORKER_THREAD"] = "1" if in_process else "0"
    # The app is named by import string, so this package never imports the web layer (api/).
    # httptools (our bounded subclass of its protocol) and uvloop, named rather than found ("auto" falls back
    # silently to the slower h11/asyncio).
    # Proxy headers (X-Forwarded-*) are honoured by the app itself for every request but intake, which
    # does not use them (api/server.py), so uvicorn's middleware is off here.
    # httptools' protocol, bounded: head size, and seconds for a head and a body (slow clients are cut off)
    limits = ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.request_header_timeout_seconds,
        body_timeout=settings.request_body_timeout_seconds,
    )
    config = uvicorn.Config(
        "api.server:app_from_environment",
        factory=True,
        log_level="warning",
        access_log=False,
        http=guarded_http_protocol(limits),  # type: ignore[arg-type]
        loop="uvloop",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    sock = _listen(host, port, reuse_port=processes > 1 or api_child_of is not None)
    children: list[Supervisor] = []

    def serving() -> bool:
        return not server.should_exit

    if api_child_of is None:
        listening = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        worker_desc = (
            f"a worker in a {'child process' if worker_mode == 'process' else 'thread'}" if worker else "no worker"
        )
        log.info(
            "listening on %s (%d API process%s, %s); database %s; SDKs and sentry-cli use %s",
            listening, processes, "" if processes == 1 else "es", worker_desc, safe_url(settings.database_url),
            settings.public_url,
        )  # fmt: skip
        if worker and worker_mode == "process":
            # The digest is CPU work: in its own process it does not compete with intake for the GIL.
            # Supervised: a worker that dies is started again, or the queue would never drain.
            argv = [sys.executable, "-m", "detector.cli", "worker", "--parent-pid", str(os.getpid())]
            backoff = settings.worker_restart_backoff_seconds
            children.append(Supervisor("worker", argv, min_backoff=backoff, keep_running=serving))
        for _ in range(processes - 1):
            argv = [sys.executable, "-m", "detector.cli", "serve", "--host", host, "--port", str(port)]
            argv += ["--no-worker", "--api-child-of", str(os.getpid())]
            children.append(Supervisor("API", argv, keep_running=serving))
        for child in children:
            child.start()
    if api_child_of is not None:
        threading.Thread(target=_exit_when_orphaned, args=(api_child_of, server), daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        stop_all(children)
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _exit_when_orphaned(parent_pid: int, server: Any) -> None:
    """An API process started by `serve --processes` ends with it, even if `serve` was killed."""
    while not server.should_exit:
        if os.getppid() != parent_pid:
            server.should_exit = True
        time.sleep(1.0)


@app.command("worker")
def worker_command(
    once: Annotated[bool, typer.Option(help="Digest what is queued, run each job once, and exit.")] = False,
    parent_pid: Annotated[
        int | None, typer.Option(hidden=True, help="Stop when this process is gone (set by `serve`).")
    ] = None,
) -> None:
    """Run a worker: digest intake, run detection passes, send alerts, pull from Sentry."""
    from detector.metrics import Metrics
    from detector.notify import channel_for
    from detector.runtime import build_worker_from_settings, freeze_startup_objects

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    ready_database(settings)
    worker = build_worker_from_settings(settings, Metrics())
    log.info(
        "worker on database %s; detection passes %s; alerts to %s",
        safe_url(settings.database_url),
        f"every {settings.detect_interval_seconds:g} s" if settings.detect_schedule == "on" else "off",
        channel_for(settings) or "nowhere (Slack is not configured)",
    )
    if once:
        while worker.digest_once().items:
            pass
        worker.run_due_jobs()
        for job in worker.background_jobs:  # alerts and webhooks, which a running worker sends from a thread
            job.run()
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if parent_pid is not None:
        threading.Thread(target=_stop_when_orphaned, args=(parent_pid, stop), daemon=True).start()
    freeze_startup_objects()
    worker.run(stop)


def _stop_when_orphaned(parent_pid: int, stop: threading.Event) -> None:
    """A worker started by `serve` ends with it, even if `serve` was killed without a chance to say so."""
    while not stop.wait(1.0):
        if os.getppid() != parent_pid:
            stop.set()


def parse_when(value: str | None, *, name: str = "--at") -> datetime:
    """An ISO 8601 time (`2026-11-27T15:04:00Z`) or unix seconds, as everywhere else; None is now."""
    from detector.deploys.records import parse_timestamp

    if value is None:
        return datetime.now(UTC)
    try:
        when = parse_timestamp(value, name=name)
    except DetectorError as exc:
        raise fail(f"{exc} (give an ISO 8601 time such as 2026-11-27T15:04:00Z, or unix seconds)") from exc
    assert when is not None
    return when


def echo_json(data: Any) -> None:
    """One JSON document on stdout, times as ISO 8601 UTC with a `Z`, as the API writes them."""
    typer.echo(json.dumps(data, default=json_default))


@app.command("detect")
def detect_command(
    project: Annotated[str, typer.Option(help="Project slug.")],
    at: Annotated[
        str | None, typer.Option(help="Run the pass as of this time: ISO 8601 or unix seconds (default: now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's answer to POST .../detect.")] = False,
    url: Annotated[
        str | None, typer.Option("--url", envvar="DETECTOR_URL", help="Run it on this detector over HTTP.")
    ] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="DETECTOR_TOKEN", help="API token for --url.")] = None,
) -> None:
    """Run one detection pass and print the anomalies it opened or updated."""
    from detector.changes import describe_changes
    from detector.scheduling import run_project_pass

    when = parse_when(at)
    if url is not None:
        from detector.remote import Remote

        if not token:
            raise fail("--url needs an API token: --token or DETECTOR_TOKEN (from `detector token create`)")
        try:
            answer = Remote(url, token).detect(project, when)
        except DetectorError as exc:
            raise fail(str(exc)) from exc
        items = answer["changes"]
    else:
        settings = load_settings()
        factory = session_factory(settings)
        try:
            with factory() as session:
                project_id = get_project_by_slug(session, project).id
            changes = run_project_pass(factory, settings, project_id=project_id, at=when)
        except DetectorError as exc:
            raise fail(str(exc)) from exc
        with factory() as session:
            items = describe_changes(session, changes, project_slug=project, public_url=settings.public_url)
    if as_json:
        echo_json({"at": when, "changes": items})
        return
    if not items:
        typer.echo(f"{iso_utc(when)}: no anomalies")
    for item in items:
        anomaly = item["anomaly"]
        release = anomaly["release"]
        where = f" in {release}" if release and release not in anomaly["title"] else ""
        typer.echo(
            f"{item['change']:>8} #{anomaly['id']} {anomaly['kind']}: {anomaly['title']}{where} "
            f"({anomaly['sessions_affected']} sessions, score {anomaly['score']:.1f})"
        )


def _flags_take_no_value(command: Any) -> None:
    """Help shows a flag as `--json`, not `--json <bool>` (typer's default), since it takes no value."""
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _flags_take_no_value(sub)
    own_help = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = own_help(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option


def main() -> None:
    command = typer.main.get_command(app)
    _flags_take_no_value(command)
    command()


if __name__ == "__main__":
    main()
