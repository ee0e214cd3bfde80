"""The seed incident through every real piece: a git repository, the real sentry-cli, `detector serve`
with its child worker, envelopes over HTTP, and a Slack stand-in that must receive exactly one alert
naming the culprit commit first.

Nothing here calls detection directly: the worker started by `serve` runs a pass right after the deploy
(`request_detection`) and then every `DETECTOR_DETECT_INTERVAL_SECONDS`, and delivers the alert outbox.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from detector.demo import repo as demo_repo
from detector.demo import scenario
from detector.store.models import Project
from tests.alerts.slack_standin import SlackStandin, validate_message
from tests.conftest import LiveServer, wait_for
from tests.e2e.test_sentry_cli_releases import sentry_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sentry-cli") is None, reason="sentry-cli is not installed"),
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
]

CULPRIT_MESSAGE = "Add instrumentation and improve error logging"
SESSIONS = 600
ERROR_SHARE = 0.07


def detector_cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def report(server: LiveServer, token: str, repo: Path, release: str, *deploy_args: str) -> None:
    for args in (
        ("releases", "new", release),
        ("releases", "set-commits", release, "--local"),
        ("releases", "deploys", release, "new", "-e", "production", *deploy_args),
        ("releases", "finalize", release),
    ):
        result = sentry_cli(server, token, repo, *args)
        assert result.returncode == 0, f"sentry-cli {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def envelope(items: list[tuple[dict[str, Any], dict[str, Any]]], dsn: str) -> bytes:
    lines = [json.dumps({"sent_at": datetime.now(UTC).isoformat(), "dsn": dsn})]
    for header, payload in items:
        lines += [json.dumps(header), json.dumps(payload)]
    return ("\n".join(lines) + "\n").encode()


def incident_event(release: str, when: datetime, user: str, sid: str) -> dict[str, Any]:
    """The TypeError as @sentry/browser reports it once source maps resolved its frames."""
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": when.timestamp(),
        "platform": "javascript",
        "level": "error",
        "release": release,
        "environment": "production",
        "user": {"id": user},
        "tags": {"session": sid},
        "request": {"url": "https://shop.example.com/billing"},
        "exception": {
            "values": [
                {
                    "type": "TypeError",
                    "value": scenario.INCIDENT_VALUE,
                    "mechanism": {"type": "onunhandledrejection", "handled": False},
                    "stacktrace": {"frames": [dict(f) for f in scenario.INCIDENT_FRAMES]},
                }
            ]
        },
    }


def post_traffic(server: LiveServer, project: Project, release: str, deployed: datetime, rng: random.Random) -> int:
    """`SESSIONS` sessions of distinct users on `release`, about `ERROR_SHARE` of them hitting the
    TypeError, stamped between `deployed` and now (a release's sessions cannot start before its deploy);
    returns how many incident events were sent."""
    dsn = f"http://{project.public_key}@127.0.0.1:{server.port}/{project.id}"
    url = f"{server.url}/api/{project.id}/envelope/?sentry_key={project.public_key}"
    now = datetime.now(UTC)
    span = (now - deployed).total_seconds()
    items: list[tuple[dict[str, Any], dict[str, Any]]] = []
    incidents = 0
    for n in range(SESSIONS):
        sid, user = uuid.uuid4().hex, f"user-{n}"
        started = now - timedelta(seconds=rng.uniform(0, span))
        failed = rng.random() < ERROR_SHARE
        if failed:
            incidents += 1
            items.append(({"type": "event"}, incident_event(release, started, user, sid)))
        items.append(
            (
                {"type": "session"},
                {
                    "sid": sid,
                    "did": user,
                    "init": True,
                    "started": started.isoformat(),
                    "timestamp": now.isoformat(),
                    "status": "exited",
                    "errors": int(failed),
                    "attrs": {"release": release, "environment": "production"},
                },
            )
        )
    with httpx.Client(timeout=10) as client:
        for start in range(0, len(items), 100):
            answer = client.post(url, content=envelope(items[start : start + 100], dsn))
            assert answer.status_code == 200, answer.text
    return incidents


@pytest.fixture
def slack() -> Any:
    with SlackStandin() as standin:
        yield standin


def test_seed_incident_reaches_slack_once_with_the_culprit_first(
    database_url: str,
    tmp_path: Path,
    factory: sessionmaker[Session],
    project: Project,
    token: str,
    auth: dict[str, str],
    slack: SlackStandin,
) -> None:
    now = datetime.now(UTC)
    repo = tmp_path / "storefront"
    demo_repo.init_repo(repo)
    demo_repo.commit(repo, scenario.INITIAL_COMMIT, when=now - timedelta(hours=3))
    server = LiveServer(
        database_url,
        tmp_path,
        extra_env={"DETECTOR_SLACK_WEBHOOK_URL": slack.webhook_url, "DETECTOR_DETECT_INTERVAL_SECONDS": "1"},
    ).start()
    try:
        linked = detector_cli(server, "project", "set-repo", project.slug, str(repo))
        assert linked.returncode == 0, linked.stderr
        report(
            server, token, repo, scenario.GOOD_RELEASE, "--finished", str(int((now - timedelta(hours=2)).timestamp()))
        )

        shas = demo_repo.commit_all(repo, scenario.RELEASE_COMMITS, deploy_at=now - timedelta(minutes=1))
        culprit = shas[[c.message for c in scenario.RELEASE_COMMITS].index(CULPRIT_MESSAGE)]
        report(server, token, repo, scenario.BAD_RELEASE)
        deployed = datetime.now(UTC)
        time.sleep(0.5)

        incidents = post_traffic(server, project, scenario.BAD_RELEASE, deployed, random.Random(11))
        assert SESSIONS * 0.04 < incidents < SESSIONS * 0.11

        def alerts() -> list[Any]:
            return slack.accepted_payloads()

        assert wait_for(alerts, timeout=60, every=0.2), f"no alert reached Slack; server log:\n{server.log()[-4000:]}"
        # Later passes keep seeing the same anomaly (and the release's error rate): still one message.
        time.sleep(4)
        listing = httpx.get(f"{server.url}/api/v1/projects/{project.slug}/anomalies", headers=auth, timeout=10)
    finally:
        server.stop()

    payloads = slack.accepted_payloads()
    assert len(payloads) == 1, [p.get("text") for p in payloads]
    message = payloads[0]
    assert validate_message(message) is None
    assert message["blocks"], "a Block Kit message"
    text = json.dumps(message)
    assert scenario.INCIDENT_TITLE_PART in text
    assert culprit[:7] in text
    first_sha = min((text.find(sha[:7]) for sha in shas if sha[:7] in text), default=-1)
    assert first_sha == text.find(culprit[:7]), "the culprit is the first commit the alert names"

    assert listing.status_code == 200, listing.text
    incident = [a for a in listing.json()["items"] if scenario.INCIDENT_TITLE_PART in a["title"]]
    assert len(incident) == 1
    anomaly = incident[0]
    assert anomaly["kind"] == "new_signature"
    assert anomaly["release"] == scenario.BAD_RELEASE
    assert anomaly["deploy"]["release"] == scenario.BAD_RELEASE
    assert str(anomaly["id"]) in text, "the alert links to the anomaly the API lists"
    top = anomaly["suspects"][0]
    assert top["sha"] == culprit
    evidence = " ".join(top["evidence"])
    assert "getEntitlements" in evidence and "src/api/entitlements.js" in evidence, evidence
