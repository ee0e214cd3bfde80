"""Figures under faults (issue 18), for docs/BENCHMARKS.md:

    python -m bench.faults db-restart [--down-seconds 5]
    python -m bench.faults queue-bound [--database sqlite|postgresql] [--bound 100000]
    python -m bench.faults slack-outage [--retry-max 30] [--outage-seconds 120]

- `db-restart`: `detector serve` on a PostgreSQL cluster of its own (initdb in a temporary directory, another
  port), sent an event every 20 ms; the cluster is stopped (`pg_ctl stop -m fast`) for `--down-seconds`
  and started again. Prints the answers during the outage, the seconds from `pg_ctl start` returning to
  the first accepted event and to `/healthz` 200, and how many acknowledged events were not digested.
- `queue-bound`: `detector serve --no-worker` with the queue's bound at `--bound` items; bench.ingest's
  events (~2 KB) posted as fast as answered until 20% past the bound. Then `detector worker` drains it;
  its resident memory is sampled every 0.25 s. Prints the depth at the bound, the answers, the worker's
  RSS (start, peak, end), the drain time and the queue's size on disk before and after the drain.
- `slack-outage`: a worker (in this process, the real loop) with one alert queued while the Slack
  stand-in answers 503 to everything for `--outage-seconds`; prints the delay from Slack's recovery to
  the alert's delivery, against `DETECTOR_SLACK_RETRY_MAX_SECONDS` (`--retry-max`).

The last line of each is one JSON object. The PostgreSQL cluster and the stand-in come from the test
support code (`tests/support/faults.py`, `tests/alerts/slack_standin.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import func, select

from bench.ingest import Servers, _post_all, build_bodies
from bench.scratch_databases import scratch_database
from detector.store.db import make_engine, make_sessionmaker, transaction, upgrade
from detector.store.models import Event
from detector.store.projects import create_project
from detector.store.queue import queue_file_bytes
from tests.support.faults import ThrowawayPostgres, store_event, wait_until


def db_restart(args: argparse.Namespace) -> dict[str, Any]:
    cluster = ThrowawayPostgres()
    reason = cluster.available
    if reason:
        raise SystemExit(f"cannot make a PostgreSQL cluster here: {reason}")
    cluster.create()
    workdir = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    serve: subprocess.Popen[bytes] | None = None
    try:
        upgrade(cluster.url)
        factory = make_sessionmaker(make_engine(cluster.url))
        with transaction(factory) as session:
            project = create_project(session, slug="bench", org="default")
        port = Servers(cluster.url, 1, workdir).ports[0]
        base = f"http://127.0.0.1:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")},
            "DETECTOR_DATABASE_URL": cluster.url,
            "DETECTOR_DETECT_SCHEDULE": "off",
        }
        serve = subprocess.Popen(
            [sys.executable, "-m", "detector.cli", "serve", "--port", str(port)],
            env=env,
            stdout=(workdir / "serve.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert wait_until(lambda: _status(base + "/healthz") == 200, timeout=90), "serve did not start"
        answers: list[tuple[float, int, str | None]] = []
        stop = threading.Event()

        def send() -> None:
            while not stop.wait(0.02):
                try:
                    answer = store_event(base, project, "checkout failed", timeout=30)
                except httpx.HTTPError:
                    answers.append((time.monotonic(), 0, None))
                    continue
                event_id = answer.json().get("id") if answer.status_code == 200 else None
                answers.append((time.monotonic(), answer.status_code, event_id))

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(3)
        factory.kw["bind"].dispose()
        cluster.stop()
        stopped = time.monotonic()
        time.sleep(args.down_seconds)
        cluster.start()
        started = time.monotonic()
        health_back = wait_until(lambda: _status(base + "/healthz") == 200, timeout=120)
        intake_back = next((t - started for t, status, _ in answers if t >= started and status == 200), None)
        time.sleep(3)
        stop.set()
        sender.join(30)
        during = [status for t, status, _ in answers if stopped <= t < started]
        acknowledged = {event_id for _, status, event_id in answers if status == 200 and event_id}
        wait_until(lambda: _stored(factory, acknowledged) == len(acknowledged), timeout=120)
        return {
            "fault": "db-restart",
            "down_seconds": args.down_seconds,
            "answers_while_down": {str(s): during.count(s) for s in sorted(set(during))},
            "intake_recovered_s": round(intake_back, 2) if intake_back is not None else None,
            "healthz_recovered_s": round(health_back, 2) if health_back is not None else None,
            "acknowledged": len(acknowledged),
            "lost": len(acknowledged) - _stored(factory, acknowledged),
            "load_average": os.getloadavg()[0],
        }
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(30)
        cluster.destroy()


def queue_bound(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    with scratch_database(args.database, prefix="bench") as database_url:
        servers = Servers(database_url, 1, workdir, digest=False)
        servers.env["DETECTOR_QUEUE_MAX_ITEMS"] = str(args.bound)
        servers.start()
        worker: subprocess.Popen[bytes] | None = None
        try:
            project = json.loads(servers.cli("project", "create", "bench", "--json").strip().splitlines()[-1])
            bodies, _expected = build_bodies(int(args.bound * 1.2), 300, seed=7)
            path = f"/api/{project['id']}/envelope/?sentry_key={project['public_key']}&sentry_version=7"
            base = f"http://127.0.0.1:{servers.ports[0]}"
            latencies: list[float] = []
            posted = time.perf_counter()
            statuses = asyncio.run(_post_all("127.0.0.1", servers.ports, path, bodies, 64, latencies))
            post_seconds = time.perf_counter() - posted
            health = httpx.get(base + "/healthz", timeout=30).json()
            engine = make_engine(database_url)
            before = queue_file_bytes(engine)
            api_rss = max(psutil.Process(pid).memory_info().rss for pid in servers.pids()) / 1048576
            worker = subprocess.Popen(
                [sys.executable, "-m", "detector.cli", "worker"],
                env=servers.env,
                stdout=(workdir / "worker.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            process = psutil.Process(worker.pid)
            samples: list[float] = []
            drain_started = time.monotonic()
            drained = None
            while time.monotonic() - drain_started < 1800:
                samples.append(process.memory_info().rss / 1048576)
                if len(samples) % 4 == 0 and httpx.get(base + "/healthz", timeout=30).json()["queue_depth"] == 0:
                    drained = time.monotonic() - drain_started
                    break
                time.sleep(0.25)
            log = workdir / "worker.log"
            wait_until(lambda: "queue compacted" in log.read_text(), timeout=90)
            after = queue_file_bytes(engine)
            factory = make_sessionmaker(engine)
            with factory() as session:
                stored = session.scalar(select(func.count(Event.id))) or 0
            engine.dispose()
            return {
                "fault": "queue-bound",
                "database": args.database,
                "bound_items": args.bound,
                "offered": len(bodies),
                "answers": {str(k): v for k, v in sorted(statuses.items())},
                "accepted_per_s": round(statuses.get(200, 0) / post_seconds),
                "p99_ms": round(sorted(latencies)[int(len(latencies) * 0.99)] * 1000, 2),
                "depth_at_bound": health["queue_depth"],
                "api_rss_mb": round(api_rss, 1),
                "worker_rss_mb": {
                    "start": round(samples[0], 1),
                    "peak": round(max(samples), 1),
                    "end": round(samples[-1], 1),
                },
                "drain_s": round(drained, 1) if drained is not None else None,
                "digested": stored,
                "lost": statuses.get(200, 0) - stored,
                "queue_mb_before_drain": round(before / 1048576, 1),
                "queue_mb_after_drain": round(after / 1048576, 2),
                "load_average": os.getloadavg()[0],
            }
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(30)
            servers.stop()


def slack_outage(args: argparse.Namespace) -> dict[str, Any]:
    from detector.config import Settings
    from detector.detection import AnomalyChange
    from detector.metrics import Metrics
    from detector.notify import enqueue_alerts
    from detector.runtime import build_worker_from_settings
    from detector.store.models import Anomaly, Notification
    from tests.alerts.slack_standin import SlackStandin

    workdir = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    url = f"sqlite:///{workdir / 'detector.db'}"
    upgrade(url)
    factory = make_sessionmaker(make_engine(url))
    now = datetime.now(UTC)
    with transaction(factory) as session:
        project = create_project(session, slug="bench", org="default")
        anomaly = Anomaly(
            project_id=project.id, key="bench", kind="new_signature", state="open", title="TypeError: bench",
            release="web@1", environment="production", first_seen=now, detected_at=now, updated_at=now,
            events=10, users=5, sessions_affected=5, score=50.0,
        )  # fmt: skip
        session.add(anomaly)
        session.flush()
        enqueue_alerts(session, [AnomalyChange(anomaly.id, "created", "new_signature")], channel="webhook")
    with SlackStandin() as slack:
        settings = Settings(
            database_url=url, slack_webhook_url=slack.webhook_url, slack_retry_max_seconds=args.retry_max,
            detect_schedule="off",
        )  # fmt: skip
        slack.outage(times=1_000_000, status=503)
        worker = build_worker_from_settings(settings, Metrics(), factory)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        time.sleep(args.outage_seconds)
        tries = len(slack.requests)
        slack.end_faults()
        recovered = time.monotonic()
        delay = wait_until(lambda: slack.accepted_payloads(), timeout=args.retry_max * 4 + 60)
        stop.set()
        thread.join(60)
    with factory() as session:
        attempts = session.scalar(select(Notification.attempts))
    return {
        "fault": "slack-outage",
        "outage_s": args.outage_seconds,
        "retry_max_s": args.retry_max,
        "requests_during_outage": tries,
        "alert_delay_after_recovery_s": round(delay, 2) if delay is not None else None,
        "attempts": attempts,
        "since_recovered_s": round(time.monotonic() - recovered, 1),
    }


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _stored(factory: Any, ids: set[str]) -> int:
    try:
        with factory() as session:
            return session.scalar(select(func.count(Event.id)).where(Event.event_id.in_(ids))) or 0
    except Exception:  # the database is still coming back: nothing counted yet
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="fault", required=True)
    restart = sub.add_parser("db-restart")
    restart.add_argument("--down-seconds", type=float, default=5.0)
    bound = sub.add_parser("queue-bound")
    bound.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    bound.add_argument("--bound", type=int, default=100_000)
    outage = sub.add_parser("slack-outage")
    outage.add_argument("--retry-max", type=float, default=30.0)
    outage.add_argument("--outage-seconds", type=float, default=120.0)
    args = parser.parse_args()
    run = {"db-restart": db_restart, "queue-bound": queue_bound, "slack-outage": slack_outage}[args.fault]
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
