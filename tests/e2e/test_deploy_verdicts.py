"""Deploy verdicts end to end: the real sentry-cli records three deploys on a live `detector serve`, session
aggregates and events come in as envelopes, the worker's own passes judge the deploys, and

* `detector deploy verify` exits 1 on the bad deploy (naming its error) and 0 on the healthy one;
* the Argo Rollouts template of docs/GATES.md, its `jsonPath` and conditions evaluated on the live answer,
  says failure and success; the Flagger webhook of docs/GATES.md gets 412 and 200 from the gate; the
  GitHub Actions job of docs/GATES.md rolls back on the bad deploy only;
* the project's failing webhook reaches a local receiver once per failing deploy, HMAC-signed, after a
  retry; the verdict is posted in the thread of the bad deploy's Slack alert (a Slack stand-in).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonpath_ng import parse as jsonpath

from detector.store.models import Project
from tests.alerts.slack_standin import SlackStandin
from tests.conftest import LiveServer, wait_for
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sentry-cli") is None, reason="sentry-cli is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
GATES = ROOT / "docs" / "GATES.md"
DOCUMENTED_URL = "https://detector.example.com"
ORIGIN = "https://app.example.com"
PER_MINUTE = 400
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0"


SECRET = "rollback-s3cret"


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET, statuses=[503]) as hook:  # the first delivery meets an outage
        yield hook


@pytest.fixture
def server(
    database_url: str, tmp_path: Path, project: Project, token: str, slack: SlackStandin, receiver: WebhookReceiver
) -> Iterator[LiveServer]:
    set_gate = subprocess.run(
        [sys.executable, "-m", "detector.cli", "project", "set-gate", "web", "--webhook-url", receiver.url,
         "--webhook-secret", SECRET],
        env={**os.environ, "DETECTOR_DATABASE_URL": database_url}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert set_gate.returncode == 0, set_gate.stderr
    env = {
        "DETECTOR_DETECT_INTERVAL_SECONDS": "1",
        "DETECTOR_SLACK_BOT_TOKEN": slack.token,
        "DETECTOR_SLACK_CHANNEL": slack.channel,
        "DETECTOR_SLACK_API_URL": slack.api_base_url,
    }
    live = LiveServer(database_url, tmp_path, env).start()
    yield live
    live.stop()


def sentry_cli(server: LiveServer, token: str, cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "SENTRY_URL": server.url + "/",
        "SENTRY_AUTH_TOKEN": token,
        "SENTRY_ORG": "default",
        "SENTRY_PROJECT": "web",
        "SENTRY_LOG_LEVEL": "warn",
        "SENTRY_DISABLE_UPDATE_CHECK": "1",
    }
    done = subprocess.run(["sentry-cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"sentry-cli {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def error_event(release: str, t: datetime, rng: random.Random, new: bool) -> dict[str, Any]:
    etype, value, fn = ("TypeError", "e.items.map is not a function", "renderPlans") if new else (
        "Error", "quota exceeded", "saveDraft")  # fmt: skip
    return {
        "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "timestamp": t.timestamp(),
        "platform": "javascript",
        "level": "error",
        "release": release,
        "environment": "production",
        "user": {"id": uuid.UUID(int=rng.getrandbits(128)).hex},
        "request": {"url": ORIGIN + "/plans", "headers": {"User-Agent": USER_AGENT}},
        "exception": {
            "values": [
                {
                    "type": etype,
                    "value": value,
                    "mechanism": {"type": "onerror", "handled": False},
                    "stacktrace": {
                        "frames": [
                            {"filename": f"{ORIGIN}/assets/index.js", "function": "main", "lineno": 1, "colno": 90,
                             "in_app": True},
                            {"filename": f"{ORIGIN}/assets/index.js", "function": fn, "lineno": 1, "colno": 4211,
                             "in_app": True},
                        ]
                    },
                }
            ]
        },
    }  # fmt: skip


def envelope(items: list[tuple[str, dict[str, Any]]], sent_at: datetime) -> bytes:
    lines = [json.dumps({"sent_at": sent_at.isoformat()}).encode()]
    for kind, payload in items:
        body = json.dumps(payload).encode()
        lines += [json.dumps({"type": kind, "length": len(body)}).encode(), body]
    return gzip.compress(b"\n".join(lines) + b"\n")


def replay(server: LiveServer, token: str, project: Project, workdir: Path) -> None:
    """75 minutes ending now: web@1.0.0, a healthy web@1.1.0 after 30, web@1.2.0 after 60 bringing a
    TypeError to 5 % of its sessions; 400 sessions a minute, 0.5 % errored by an old bug."""
    rng = random.Random(15)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    t0 = end - timedelta(minutes=75)
    deploys = {"web@1.0.0": t0, "web@1.1.0": t0 + timedelta(minutes=30), "web@1.2.0": t0 + timedelta(minutes=60)}
    live: list[str] = []
    http = httpx.Client(base_url=server.url, timeout=30)
    params = {"sentry_key": project.public_key, "sentry_version": "7"}
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain;charset=UTF-8"}
    t = t0
    while t < end:
        for release, at in deploys.items():
            if at == t:
                sentry_cli(server, token, workdir, "releases", "new", release)
                sentry_cli(server, token, workdir, "releases", "deploys", release, "new", "-e", "production",
                           "--finished", str(int(at.timestamp())))  # fmt: skip
                live.append(release)
        newest = live[-1]
        share = min(1.0, (t - deploys[newest]).total_seconds() / 300 + 0.2)
        counts = {r: [0, 0] for r in live}
        items: list[tuple[str, dict[str, Any]]] = []
        for _ in range(PER_MINUTE):
            release = newest if len(live) == 1 or rng.random() < share * 0.98 else live[-2]
            second = t + timedelta(seconds=rng.randint(0, 59))
            errored = False
            if rng.random() < 0.005:
                items.append(("event", error_event(release, second, rng, new=False)))
                errored = True
            if release == "web@1.2.0" and rng.random() < 0.05:
                items.append(("event", error_event(release, second, rng, new=True)))
                errored = True
            counts[release][1 if errored else 0] += 1
        items += [
            ("sessions", {"aggregates": [{"started": t.isoformat(), "exited": ok, "errored": bad}],
                          "attrs": {"release": r, "environment": "production"}})
            for r, (ok, bad) in counts.items()
        ]  # fmt: skip
        for start in range(0, len(items), 20):
            answer = http.post(
                f"/api/{project.id}/envelope/",
                content=envelope(items[start : start + 20], t + timedelta(seconds=59)),
                params=params,
                headers=headers,
            )
            assert answer.status_code == 200, answer.text
        t += timedelta(minutes=1)


def with_console_scripts() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def verify(server: LiveServer, token: str, release: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", "deploy", "verify", "--url", server.url, "--token", token,
         "--project", "web", "--release", release, "--environment", "production", "--timeout", "120s",
         "--interval", "1s"],
        capture_output=True, text=True, timeout=180, env=with_console_scripts(),
    )  # fmt: skip


def documented(kind: str) -> dict[str, Any]:
    """The YAML example of docs/GATES.md whose `kind` (or workflow `name`) is `kind`."""
    for block in re.findall(r"```yaml\n(.*?)```", GATES.read_text(), flags=re.S):
        document = yaml.safe_load(block)
        if document.get("kind") == kind or document.get("name") == kind:
            return document  # type: ignore[no-any-return]
    raise AssertionError(f"docs/GATES.md has no {kind} example")


def argo_condition(expression: str, result: object) -> bool:
    """An Argo Rollouts condition of the documented form (`result == "x" || result == "y"`)."""
    terms = [term.strip() for term in expression.split("||")]
    for term in terms:
        match = re.fullmatch(r'result == "([a-z]+)"', term)
        assert match, f"unexpected condition term {term!r}"
    return any(result == re.fullmatch(r'result == "([a-z]+)"', t).group(1) for t in terms)  # type: ignore[union-attr]


def argo_measure(server: LiveServer, token: str, release: str) -> tuple[bool, bool]:
    """(successCondition, failureCondition) of the documented AnalysisTemplate's metric for `release`."""
    metric = documented("AnalysisTemplate")["spec"]["metrics"][0]
    web = metric["provider"]["web"]
    url = web["url"].replace("{{args.release}}", release).replace(DOCUMENTED_URL, server.url)
    headers = {h["key"]: h["value"].replace("{{args.detector-token}}", token) for h in web["headers"]}
    body = httpx.get(url, headers=headers, timeout=30).json()
    path = web["jsonPath"].strip()
    assert path.startswith("{") and path.endswith("}")
    (match,) = jsonpath(path[1:-1]).find(body)
    return argo_condition(metric["successCondition"], match.value), argo_condition(
        metric["failureCondition"], match.value
    )


def flagger_check(server: LiveServer, token: str, release: str) -> int:
    """The status Flagger's documented webhook gets from the gate for `release`."""
    (hook,) = documented("Canary")["spec"]["analysis"]["webhooks"]
    url = hook["url"].replace("web@1.2.0", release).replace(DOCUMENTED_URL, server.url)
    payload = {"name": "web", "namespace": "default", "phase": "Progressing",
               "metadata": {**hook["metadata"], "token": token}}  # fmt: skip
    return httpx.post(url, json=payload, timeout=30).status_code


def github_verify_step(server: LiveServer, token: str, release: str, workdir: Path) -> tuple[int, bool]:
    """Run the documented job's `verify` step; its exit code and whether it ran ./rollback.sh."""
    steps = documented("deploy")["jobs"]["deploy"]["steps"]
    (step,) = [s for s in steps if s.get("name") == "verify"]
    marker = workdir / f"rolled-back-{release}"
    rollback = workdir / "rollback.sh"
    rollback.write_text(f'#!/bin/sh\ntouch "{workdir}/rolled-back-$1"\n')
    rollback.chmod(0o755)
    env = {**with_console_scripts(), "DETECTOR_URL": server.url, "DETECTOR_TOKEN": token, "VERSION": release}
    script = step["run"].replace("--timeout 30m", "--timeout 120s --interval 1s")
    done = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=180)
    return done.returncode, marker.exists()


def test_verify_fails_the_bad_deploy_passes_the_good_one_and_the_documented_gates_agree(
    server: LiveServer, token: str, project: Project, tmp_path: Path, slack: SlackStandin, receiver: WebhookReceiver
) -> None:
    replay(server, token, project, tmp_path)

    bad = verify(server, token, "web@1.2.0")
    assert bad.returncode == 1, bad.stdout + bad.stderr + server.log()[-2000:]
    assert "map is not a function" in bad.stdout and "FAILING" in bad.stdout
    good = verify(server, token, "web@1.1.0")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "HEALTHY" in good.stdout

    auth = {"Authorization": f"Bearer {token}"}
    listing = httpx.get(f"{server.url}/api/v1/projects/web/deploys", headers=auth).json()["items"]
    ids = {d["release"]: d["id"] for d in listing}
    assert set(ids) == {"web@1.0.0", "web@1.1.0", "web@1.2.0"}  # all three came from sentry-cli
    by_id = httpx.get(f"{server.url}/api/v1/projects/web/deploys/{ids['web@1.2.0']}/verdict", headers=auth).json()
    assert by_id["status"] == "failing" and by_id["anomalies"][0]["kind"] == "new_signature"
    assert by_id["sessions"] > 1000 and by_id["minutes_since_deploy"] >= 10
    first = httpx.get(f"{server.url}/api/v1/projects/web/deploys/{ids['web@1.0.0']}/verdict", headers=auth).json()
    # the first release brought the old bug: nothing had it before, so it is that deploy's new error
    assert first["status"] == "failing" and "quota exceeded" in first["reason"], first

    assert argo_measure(server, token, "web@1.2.0") == (False, True)
    assert argo_measure(server, token, "web@1.1.0") == (True, False)
    assert flagger_check(server, token, "web@1.2.0") == 412
    assert flagger_check(server, token, "web@1.1.0") == 200
    assert github_verify_step(server, token, "web@1.2.0", tmp_path) == (1, True)
    assert github_verify_step(server, token, "web@1.1.0", tmp_path) == (0, False)

    # the failing webhook: once per failing deploy (the first release's and the bad one's), signed, the
    # outage retried; none for the healthy deploy
    def delivered() -> list[dict[str, Any]]:
        accepted = [r.payload for r in receiver.received[1:]]  # the first request met the outage
        return accepted if len(accepted) >= 2 else []

    payloads = wait_for(delivered, timeout=30)
    assert payloads, [r.payload for r in receiver.received]
    assert all(r.signed for r in receiver.received)
    assert sorted(p["release"] for p in payloads) == ["web@1.0.0", "web@1.2.0"]
    bad_hook = next(p for p in payloads if p["release"] == "web@1.2.0")
    assert bad_hook["status"] == "failing" and "map is not a function" in bad_hook["anomalies"][0]["title"]
    assert bad_hook["verdict_url"].endswith(f"/deploys/{ids['web@1.2.0']}/verdict")

    # the verdict in the bad deploy's Slack thread
    def verdict_reply() -> list[Any]:
        alerts = [m for m in slack.messages if m.thread_ts is None and "map is not a function" in (m.text or "")]
        if not alerts:
            return []
        return [m for m in slack.replies(alerts[0].ts) if "Deploy verdict: failing for web@1.2.0" in (m.text or "")]

    assert wait_for(verdict_reply, timeout=30), [m.text for m in slack.messages]
    assert len(receiver.received) == 3  # nothing more was sent
