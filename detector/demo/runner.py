"""`detector demo`: replay the seed incident through the real intake, digest, detection and alert paths.

Everything happens in simulated time on real components: a real git repository, deploys recorded by
`record_deploy`, envelopes posted to the real FastAPI app, `digest_all`, `run_detection` at each
simulated minute (as the worker would), and the alert queued and delivered by `detector.notify`. The
database is left as it is, so `detector serve` can show the result afterwards.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from detector.alerts.blocks import alert_blocks
from detector.config import Settings
from detector.demo import repo as demo_repo
from detector.demo import scenario
from detector.demo.terminal import for_terminal
from detector.deploys.service import record_deploy
from detector.detection import AnomalyChange, run_detection
from detector.intake.digest import digest_all
from detector.notify import alert_content_for, channel_for, deliver_pending, enqueue_alerts, render_alert_text
from detector.sources.git_repo import GitRepo
from detector.store.db import make_engine, make_sessionmaker, transaction, upgrade
from detector.store.models import Anomaly, Deploy, Project
from detector.store.projects import create_project, delete_project
from detector.verdicts import current_verdict, verdict_as_dict

Echo = Callable[[str], None]

BASE_SLUG = "shop"
SESSIONS_PER_MINUTE = 200
BASELINE_MINUTES = 60
HISTORY_MINUTES = 20
PREVIOUS_RELEASE_MINUTES = 60
"""The older release runs this long right before the healthy deploy: the baseline its verdict compares with."""
MAX_MINUTES_AFTER_DEPLOY = 30
BASELINE_DETECTION_EVERY = 10
"""Detection passes during the healthy hour run every this many simulated minutes (they find nothing)."""


class DemoError(RuntimeError):
    """The demo could not run, or ran without catching the incident; the message says which."""


@dataclass
class DemoResult:
    """What the demo did and found; `caught_minutes` is simulated minutes from deploy to detection."""

    project_id: int
    project_slug: str
    repo_path: Path
    deploy_id: int
    release: str
    anomaly_id: int
    anomaly_kind: str
    anomaly_title: str
    caught_minutes: float
    suspects: list[dict[str, Any]]
    message: dict[str, Any]
    alert_text: str
    slack_channel: str | None
    slack_sent: int
    other_anomalies: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    good_verdict: str = ""
    """The healthy release's deploy verdict at the end of its hour."""
    bad_verdict: str = ""
    """The bad release's deploy verdict when the demo stopped."""
    failing_minutes: float | None = None
    """Simulated minutes from the bad deploy to its `failing` verdict (when `detector deploy verify` exits 1)."""


def demo_folder(settings: Settings, workdir: Path | None = None) -> Path:
    """Where the demo keeps its files: `detector-demo/` beside a SQLite database file (`NAME-demo/` for
    NAME.db), or in `workdir`, or in the current directory for PostgreSQL. The folder ignores itself in git."""
    prefix = "sqlite:///"
    if workdir is not None:
        return workdir.resolve() / "detector-demo"
    if settings.database_url.startswith(prefix) and ":memory:" not in settings.database_url:
        database = Path(settings.database_url.removeprefix(prefix).split("?", 1)[0]).resolve()
        return database.parent / f"{database.stem}-demo"
    return Path.cwd() / "detector-demo"


def claim_demo_project(session: Session, repo_path: Path, base: str = BASE_SLUG) -> str:
    """The slug for this run: `base`, after deleting the project a previous demo left under it (the one
    linked to this same demo repository); a `base` project that is not the demo's is kept, and the run
    takes `base-2`, `base-3`, … instead."""
    previous = session.scalar(select(Project).where(Project.slug == base))
    if previous is not None and previous.repo_path == str(repo_path):
        delete_project(session, previous.id)
        session.flush()
    return free_slug(session, base)


def free_slug(session: Session, base: str = BASE_SLUG) -> str:
    """`base`, or `base-2`, `base-3`, … when taken (a second demo never touches the first one's data)."""
    taken = set(session.scalars(select(Project.slug).where(Project.slug.like(f"{base}%"))))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


class _Intake:
    """Posts envelopes to the real server as a browser would (key in the query string, text/plain)."""

    def __init__(self, client: httpx.Client, project: Project) -> None:
        self.client = client
        self.url = f"/api/{project.id}/envelope/?sentry_version=7&sentry_key={project.public_key}"
        self.posted = 0

    def post(self, envelopes: list[bytes]) -> None:
        for body in envelopes:
            response = self.client.post(self.url, content=body, headers={"Content-Type": "text/plain;charset=UTF-8"})
            if response.status_code != 200:
                raise DemoError(f"intake answered {response.status_code}: {response.text[:200]}")
            self.posted += 1


@contextmanager
def local_intake_server(settings: Settings) -> Iterator[httpx.Client]:
    """`detector serve` on a free loopback port and this database, without a worker (the demo digests and
    runs passes itself, in simulated time): the same intake path a browser's SDK reaches."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {
        **os.environ,
        "DETECTOR_DATABASE_URL": settings.database_url,
        "DETECTOR_DETECT_SCHEDULE": "off",
        "DETECTOR_PUBLIC_URL": settings.public_url,
    }
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "detector.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                deadline = time.monotonic() + 60
                while True:
                    if proc.poll() is not None:
                        log.seek(0)
                        raise DemoError(f"detector serve did not start: {log.read().decode()[-1000:]}")
                    try:
                        # serving: 503 may only say no worker runs, and the demo digests by itself
                        if client.get("/healthz").status_code in (200, 503):
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise DemoError("detector serve did not answer within 60 s")
                    time.sleep(0.1)
                yield client
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _incident(session: Session, changes: list[AnomalyChange]) -> AnomalyChange | None:
    """The change that opened the seed incident's anomaly, if this pass opened it."""
    for change in changes:
        anomaly = session.get(Anomaly, change.anomaly_id)
        assert anomaly is not None
        if (
            change.change == "created"
            and anomaly.kind == "new_signature"
            and scenario.INCIDENT_TITLE_PART in anomaly.title
        ):
            return change
    return None


def _opened(
    session: Session,
    changes: list[AnomalyChange],
    *,
    deployed_at: datetime | None,
    leave_out: AnomalyChange | None = None,
) -> list[str]:
    """One line for each anomaly a pass opened (but `leave_out`), for the demo's closing account."""
    lines: list[str] = []
    for change in changes:
        if change.change != "created" or (leave_out is not None and change.anomaly_id == leave_out.anomaly_id):
            continue
        anomaly = session.get(Anomaly, change.anomaly_id)
        assert anomaly is not None
        detected = _aware(anomaly.detected_at)
        if deployed_at is None:
            when = f"{detected:%H:%M}, during the healthy hour"
        else:
            minutes = _minutes((detected - _aware(deployed_at)).total_seconds() / 60)
            when = f"{detected:%H:%M}, {minutes} min after the deploy"
        release = f" in {anomaly.release}" if anomaly.release and anomaly.release not in anomaly.title else ""
        lines.append(f"#{anomaly.id} {anomaly.kind}: {anomaly.title}{release} ({when})")
    return lines


def _verdict_of(factory: sessionmaker[Session], project_id: int, deploy_id: int) -> dict[str, Any]:
    """The deploy's verdict as `GET .../deploys/{id}/verdict` answers it."""
    with factory() as session:
        project, deploy = session.get(Project, project_id), session.get(Deploy, deploy_id)
        assert project is not None and deploy is not None
        verdict, measured_at = current_verdict(session, project, deploy)
        return verdict_as_dict(deploy, verdict, measured_at=measured_at)


def _verdict_line(verdict: dict[str, Any]) -> str:
    status = str(verdict["status"])
    exit_code = {"healthy": 0, "failing": 1, "inconclusive": 2}.get(status)
    verify = f"; `detector deploy verify` exits {exit_code}" if exit_code is not None else ""
    return f"verdict of {verdict['release']}: {status}{verify}"


def _count(opened: list[str]) -> str:
    return "no anomaly" if not opened else "1 anomaly" if len(opened) == 1 else f"{len(opened)} anomalies"


def _after(moment: datetime, deployed_at: datetime) -> str:
    """Minutes from the deploy as the alert words them (`+2 min`)."""
    return f"+{_minutes((_aware(moment) - _aware(deployed_at)).total_seconds() / 60)} min"


def _minutes(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


def run_demo(
    settings: Settings,
    *,
    workdir: Path | None = None,
    echo: Echo = print,
    seed: int = 7,
    now: datetime | None = None,
) -> DemoResult:
    """Run the whole demo against `settings.database_url` (schema created if needed); see the module doc.

    Raises `DemoError` if git is missing or the incident is not caught within
    `MAX_MINUTES_AFTER_DEPLOY` simulated minutes. Posts to Slack only if the settings name a channel.
    """
    started = time.perf_counter()
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    good_at = now - timedelta(hours=3)
    bad_at = good_at + timedelta(minutes=BASELINE_MINUTES)
    history_at = now - timedelta(hours=27)

    upgrade(settings.database_url)
    factory = make_sessionmaker(make_engine(settings.database_url))

    folder = demo_folder(settings, workdir)
    repo_path = folder / "repo"
    with transaction(factory) as session:
        # before the folder is reset: the previous demo's project still names this repository
        slug = claim_demo_project(session, repo_path)
    try:
        demo_repo.reset_demo_folder(folder)
        demo_repo.init_repo(repo_path)
        good_sha = demo_repo.commit(
            repo_path,
            scenario.INITIAL_COMMIT,
            when=good_at - timedelta(minutes=scenario.INITIAL_COMMIT.minutes_before_deploy),
        )
    except demo_repo.DemoRepoError as exc:
        raise DemoError(str(exc)) from exc
    echo(f"wrote a git repository for the storefront at {repo_path}")

    with transaction(factory) as session:
        project = create_project(session, slug=slug, org=settings.org, platform="javascript", repo_path=str(repo_path))
        project_id, slug = project.id, project.slug
    echo(f"created project {slug} (id {project_id}), linked to the repository")

    with local_intake_server(settings) as client, factory() as reader:
        project = reader.get(Project, project_id)
        assert project is not None
        intake = _Intake(client, project)

        # yesterday: the older release with the errors every release has (so they are known, not new);
        # and it again right before the healthy deploy, the baseline that deploy's verdict compares with
        for minute in [
            *scenario.minutes(history_at, HISTORY_MINUTES),
            *scenario.minutes(good_at - timedelta(minutes=PREVIOUS_RELEASE_MINUTES), PREVIOUS_RELEASE_MINUTES),
        ]:
            intake.post(
                scenario.minute_traffic(
                    rng, minute, sessions=SESSIONS_PER_MINUTE, releases=((scenario.OLD_RELEASE, 1.0),)
                ).envelopes
            )
        digest_all(factory)

        with transaction(factory) as session:
            deploy = record_deploy(
                session,
                project=session.get(Project, project_id),
                release=scenario.GOOD_RELEASE,
                environment=scenario.ENVIRONMENT,
                date_finished=good_at,
                sha=good_sha,
                source="demo",
                repo=GitRepo(repo_path),
            )
            good_deploy_id = deploy.id
        echo(f"[{good_at:%H:%M}] deployed {scenario.GOOD_RELEASE} ({good_sha[:12]}), a healthy release")

        errors = 0
        others: list[str] = []
        for i, minute in enumerate(scenario.minutes(good_at, BASELINE_MINUTES)):
            traffic = scenario.minute_traffic(
                rng,
                minute,
                sessions=SESSIONS_PER_MINUTE,
                releases=((scenario.GOOD_RELEASE, 0.97), (scenario.OLD_RELEASE, 0.03)),
            )
            intake.post(traffic.envelopes)
            errors += traffic.other_events
            digest_all(factory)
            if (i + 1) % BASELINE_DETECTION_EVERY == 0:
                at = minute + timedelta(minutes=1)
                changes = run_detection(factory, project_id=project_id, at=at)
                with factory() as session:
                    opened = _opened(session, changes, deployed_at=None)
                others += opened
                good_verdict = _verdict_of(factory, project_id, good_deploy_id)
                echo(
                    f"[{at:%H:%M}] {(i + 1) * SESSIONS_PER_MINUTE} sessions, {errors} background errors "
                    f"(ResizeObserver, network, one old bug); detection pass: {_count(opened)}; "
                    f"{_verdict_line(good_verdict)}"
                )

        try:
            shas = demo_repo.commit_all(repo_path, scenario.RELEASE_COMMITS, deploy_at=bad_at)
        except demo_repo.DemoRepoError as exc:
            raise DemoError(str(exc)) from exc
        for change, sha in zip(scenario.RELEASE_COMMITS, shas, strict=True):
            echo(f"  commit {sha[:12]} {change.message} ({change.author})")
        with transaction(factory) as session:
            deploy = record_deploy(
                session,
                project=session.get(Project, project_id),
                release=scenario.BAD_RELEASE,
                environment=scenario.ENVIRONMENT,
                date_finished=bad_at,
                sha=shas[-1],
                source="demo",
                repo=GitRepo(repo_path),
            )
            deploy_id = deploy.id
        echo(f"[{bad_at:%H:%M}] deployed {scenario.BAD_RELEASE} ({shas[-1][:12]}) with {len(shas)} commits")

        found: AnomalyChange | None = None
        caught: AnomalyChange | None = None
        failing_minutes: float | None = None
        good_verdict = _verdict_of(factory, project_id, good_deploy_id)
        changes = run_detection(factory, project_id=project_id, at=bad_at)
        with factory() as session:
            others += _opened(session, changes, deployed_at=bad_at)
        for k, minute in enumerate(scenario.minutes(bad_at, MAX_MINUTES_AFTER_DEPLOY)):
            share = scenario.bad_release_share(k)
            traffic = scenario.minute_traffic(
                rng,
                minute,
                sessions=SESSIONS_PER_MINUTE,
                releases=((scenario.BAD_RELEASE, share), (scenario.GOOD_RELEASE, 1 - share)),
                incident_release=scenario.BAD_RELEASE,
            )
            intake.post(traffic.envelopes)
            digest_all(factory)
            at = minute + timedelta(minutes=1)
            changes = run_detection(factory, project_id=project_id, at=at)
            with factory() as session:
                found = _incident(session, changes)
                opened = _opened(session, changes, deployed_at=bad_at, leave_out=found)
            others += opened
            if found is not None:
                caught = found
            said = "caught it" if found else ("still open" if caught else "nothing yet")
            if opened:
                said += f" (also {_count(opened)})"
            bad_verdict = _verdict_of(factory, project_id, deploy_id)
            if bad_verdict["status"] == "failing" and failing_minutes is None:
                failing_minutes = (at - bad_at).total_seconds() / 60
            # one clock for every line: the pass's own time, and minutes since the deploy as the alert counts them
            echo(
                f"[{at:%H:%M}] {_after(at, bad_at)}: {traffic.sessions_by_release.get(scenario.BAD_RELEASE, 0)} "
                f"sessions on {scenario.BAD_RELEASE}, {traffic.incident_events} new TypeErrors; "
                f"detection pass: {said}; {_verdict_line(bad_verdict)}"
            )
            if caught is not None and failing_minutes is not None:
                break
        if caught is None:
            raise DemoError(f"the incident was not caught within {MAX_MINUTES_AFTER_DEPLOY} simulated minutes")
        found = caught

    channel = channel_for(settings)
    with transaction(factory) as session:
        enqueue_alerts(session, [found], channel=channel)
    sent = deliver_pending(factory, settings) if channel else 0

    with factory() as session:
        anomaly = session.get(Anomaly, found.anomaly_id)
        deploy_row = session.get(Deploy, deploy_id)
        assert anomaly is not None and deploy_row is not None
        content = alert_content_for(session, anomaly.id, settings.public_url)
        caught = (_aware(anomaly.detected_at) - _aware(deploy_row.deployed_at)).total_seconds() / 60
        result = DemoResult(
            project_id=project_id,
            project_slug=slug,
            repo_path=repo_path,
            deploy_id=deploy_id,
            release=scenario.BAD_RELEASE,
            anomaly_id=anomaly.id,
            anomaly_kind=anomaly.kind,
            anomaly_title=anomaly.title,
            caught_minutes=caught,
            suspects=list(anomaly.suspects or []),
            message=alert_blocks(content),
            alert_text="",
            slack_channel=channel,
            slack_sent=sent,
            other_anomalies=others,
            good_verdict=str(good_verdict["status"]),
            bad_verdict=str(bad_verdict["status"]),
            failing_minutes=failing_minutes,
        )
    # the terminal is not Slack: show `<` where Slack's mrkdwn needs `&lt;`
    result.alert_text = render_alert_text(result.message)
    result.wall_seconds = time.perf_counter() - started
    _report(result, echo, settings)
    return result


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _report(result: DemoResult, echo: Echo, settings: Settings) -> None:
    echo("")
    echo("The alert, as Slack shows it:")
    echo("")
    echo(for_terminal(result.alert_text))
    echo(
        f"Caught {_minutes(result.caught_minutes)} min after the deploy of {result.release} "
        f"(simulated time; {result.wall_seconds:.1f} s of wall time); the suspects are ranked in the alert above."
    )
    if result.failing_minutes is not None:
        echo(
            f"Deploy verdicts: {result.release} failing {_minutes(result.failing_minutes)} min after its deploy "
            f"(`detector deploy verify` would have exited 1 then); {scenario.GOOD_RELEASE} {result.good_verdict}."
        )
    opened = 1 + len(result.other_anomalies)
    echo(f"The demo opened {opened} {'anomaly' if opened == 1 else 'anomalies'}:")
    echo(f"  #{result.anomaly_id} {result.anomaly_kind}: {result.anomaly_title} (the alert above)")
    for other in result.other_anomalies:
        echo(f"  {other}; not alerted by the demo")
    if result.slack_channel:
        echo(f"Posted {result.slack_sent} message(s) to Slack ({result.slack_channel}).")
    else:
        echo("Slack: not configured (set DETECTOR_SLACK_WEBHOOK_URL to post the alert).")
    echo(
        f"Explore it: `detector serve`, then GET {settings.public_url}/api/v1/projects/{result.project_slug}"
        f"/anomalies/{result.anomaly_id} (with a token from `detector token create`), or open notebooks/."
    )
