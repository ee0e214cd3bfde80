"""HTTP API latency on a full database: p50/p95 of the native read API's list and detail calls.

    python -m bench.api_latency [--events 1000000] [--database sqlite|postgresql] [--requests 300] [--quick]

Fills a fresh database straight through the store's tables in bulk (a week of a busy frontend: events
with a Zipf mix of signatures, their per-minute signature and session counts, releases and deploys with
commits and changed files, anomalies with suspects and evidence), starts `detector serve --no-worker`
on loopback, and times `--requests` sequential keep-alive requests per endpoint after a short warm-up
(ids drawn at random, heavy and light ones alike). The goal is p95 < 100 ms for every endpoint. The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import insert, text
from sqlalchemy.orm import Session, sessionmaker

from bench.scratch_databases import create_postgres_database, scratch_database
from detector.store.db import make_engine, make_sessionmaker, transaction, upgrade
from detector.store.models import (
    Anomaly,
    Commit,
    CommitFile,
    Deploy,
    DeployCommit,
    Event,
    Release,
    ReleaseProject,
    SessionMinute,
    Signature,
    SignatureEnvironment,
    SignatureHour,
    SignatureMinute,
    SignatureRelease,
    SignatureReleaseUser,
    SignatureUser,
    SignatureUserHour,
)
from detector.store.projects import create_project, create_token

ROOT = Path(__file__).resolve().parents[1]
GOAL_P95_MS = 100.0
DAYS = 7
SIGNATURES = 2000
RELEASES = 30
COMMITS_PER_DEPLOY = 6
ANOMALIES = 200
CHUNK = 50_000
ROUTES = ["/", "/products", "/billing", "/account", "/checkout", "/search"]
BROWSERS = ["Chrome", "Safari", "Firefox", "Edge"]
SYSTEMS = ["Windows", "macOS", "Linux", "iOS", "Android"]
FILES = [
    "src/api/entitlements.js",
    "src/features/PaidFeatures.js",
    "src/pages/Billing.js",
    "src/utils/format.js",
    "src/main.js",
    "src/cart/sync.js",
    "src/search/index.js",
    "src/styles/app.css",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def database(args: argparse.Namespace) -> Iterator[str]:
    """The database to measure: `--database-url` as given, else a fresh one (dropped unless `--keep`)."""
    if args.database_url:
        yield args.database_url
        return
    if args.keep:
        url = (
            f"sqlite:///{tempfile.mkdtemp(prefix='detector-api-bench-')}/detector.db"
            if args.database == "sqlite"
            else create_postgres_database()
        )
        print(f"keeping the database at {url}")
        yield url
        return
    with scratch_database(args.database) as url:
        yield url


# ---- filling ---------------------------------------------------------------------------------------


def bulk(factory: sessionmaker[Session], model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        with transaction(factory) as session:
            session.execute(insert(model), rows[start : start + CHUNK])


def fill(factory: sessionmaker[Session], events: int, seed: int = 3) -> dict[str, Any]:
    """Write the data set; returns the token and the ids the requests pick from."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=DAYS)
    with transaction(factory) as session:
        project = create_project(session, slug="web", org="default")
        for slug in ("admin", "docs", "mobile-web"):
            create_project(session, slug=slug, org="default")
        token = create_token(session, label="bench")
        project_id = project.id

    # releases and deploys: one production deploy every DAYS*24/RELEASES hours, and a staging one before it
    step = timedelta(days=DAYS) / RELEASES
    deploy_times = [start + step * i for i in range(RELEASES)]
    versions = [f"web@1.{i // 10}.{i % 10}" for i in range(RELEASES)]
    with transaction(factory) as session:
        session.execute(
            insert(Release),
            [
                {"org": "default", "version": v, "date_created": t, "date_released": t}
                for v, t in zip(versions, deploy_times, strict=True)
            ],
        )
        release_ids = list(session.scalars(text("SELECT id FROM releases ORDER BY id")))
        session.execute(insert(ReleaseProject), [{"release_id": r, "project_id": project_id} for r in release_ids])
        deploy_rows = []
        for version, at in zip(versions, deploy_times, strict=True):
            for environment, offset in (("staging", timedelta(minutes=-40)), ("production", timedelta())):
                deploy_rows.append(
                    {
                        "project_id": project_id,
                        "release": version,
                        "environment": environment,
                        "sha": uuid.uuid4().hex + uuid.uuid4().hex[:8],
                        "date_finished": at + offset,
                        "deployed_at": at + offset,
                        "source": "sentry-cli",
                        "dedupe_key": f"{version}:{environment}",
                        "created_at": at + offset,
                    }
                )
        session.execute(insert(Deploy), deploy_rows)
        deploys = session.execute(text("SELECT id, release, environment FROM deploys ORDER BY id")).all()
        commit_rows = [
            {
                "project_id": project_id,
                "sha": uuid.uuid4().hex + uuid.uuid4().hex[:8],
                "message": f"Change {n}: {pick.choice(['fix', 'feat', 'refactor', 'docs'])} {pick.choice(FILES)}",
                "author_name": pick.choice(["Dana", "Lee", "Sam", "Kim"]),
                "author_email": "dev@shop.example.com",
                "timestamp": deploy_times[n // COMMITS_PER_DEPLOY] - timedelta(hours=1),
                "enriched": True,
            }
            for n in range(RELEASES * COMMITS_PER_DEPLOY)
        ]
        session.execute(insert(Commit), commit_rows)
        commit_ids = list(session.scalars(text("SELECT id FROM commits ORDER BY id")))
        session.execute(
            insert(CommitFile),
            [
                {
                    "commit_id": c,
                    "path": path,
                    "change_type": "M",
                    "additions": 12,
                    "deletions": 3,
                    "patch": "@@ -1,3 +1,12 @@\n" + "+  const value = compute();\n" * 12,
                }
                for c in commit_ids
                for path in pick.sample(FILES, 3)
            ],
        )
        session.execute(
            insert(DeployCommit),
            [
                {"deploy_id": deploy_id, "commit_id": commit_ids[(i // 2) * COMMITS_PER_DEPLOY + k], "position": k}
                for i, (deploy_id, _release, _env) in enumerate(deploys)
                for k in range(COMMITS_PER_DEPLOY)
            ],
        )

    # signatures, Zipf-weighted
    weights = 1.0 / np.arange(1, SIGNATURES + 1) ** 1.1
    weights /= weights.sum()
    signature_rows = [
        {
            "project_id": project_id,
            "hash": uuid.uuid4().hex,
            "type": "TypeError",
            "value": f"Cannot read properties of undefined (reading 'field{n}')",
            "culprit": f"src/module{n % 97}.js in handler{n}",
            "title": f"TypeError: Cannot read properties of undefined (reading 'field{n}')",
            "noise_class": None,
            "in_app": True,
            "first_seen": start,
            "last_seen": now,
            "first_release": versions[0],
        }
        for n in range(SIGNATURES)
    ]
    bulk(factory, Signature, signature_rows)
    with factory() as session:
        signature_ids = np.array(list(session.scalars(text("SELECT id FROM signatures ORDER BY id"))))

    # events, in chunks; their per-minute counts are summed as we go
    span_minutes = DAYS * 24 * 60
    deploy_minutes = np.array([int((t - start).total_seconds() // 60) for t in deploy_times])
    counts: list[pd.DataFrame] = []
    sample_event_ids: list[str] = []
    done = 0
    while done < events:
        n = min(CHUNK, events - done)
        sig = signature_ids[rng.choice(SIGNATURES, size=n, p=weights)]
        minute = rng.integers(0, span_minutes, size=n)
        seconds = rng.uniform(0, 60, size=n)
        release_index = np.clip(np.searchsorted(deploy_minutes, minute, side="right") - 1, 0, RELEASES - 1)
        env = np.where(rng.random(n) < 0.9, "production", "staging")
        user = rng.integers(0, 200_000, size=n)
        ids = [uuid.uuid4().hex for _ in range(n)]
        sample_event_ids += pick.sample(ids, 20)
        rows = []
        for i in range(n):
            ts = start + timedelta(minutes=int(minute[i]), seconds=float(seconds[i]))
            route = ROUTES[int(user[i]) % len(ROUTES)]
            rows.append(
                {
                    "project_id": project_id,
                    "event_id": ids[i],
                    "signature_id": int(sig[i]),
                    "release": versions[int(release_index[i])],
                    "environment": str(env[i]),
                    "timestamp": ts,
                    "minute": ts.replace(second=0, microsecond=0),
                    "received_at": ts,
                    "user_key": f"u{user[i]}",
                    "session_key": f"s{user[i]}-{minute[i] // 30}",
                    "route": route,
                    "browser": BROWSERS[int(user[i]) % len(BROWSERS)],
                    "os": SYSTEMS[int(user[i]) % len(SYSTEMS)],
                    "data": {
                        "level": "error",
                        "platform": "javascript",
                        "url": f"https://shop.example.com{route}",
                        "exception_type": "TypeError",
                        "exception_value": f"Cannot read properties of undefined (reading 'field{sig[i]}')",
                        "tags": {"browser": BROWSERS[int(user[i]) % len(BROWSERS)]},
                        "frames": [
                            {
                                "filename": "src/main.js",
                                "function": "start",
                                "lineno": 5,
                                "colno": 53,
                                "in_app": True,
                                "context_line": "  document.querySelector('#features').innerHTML = await render();",
                            },
                            {
                                "filename": f"src/module{int(sig[i]) % 97}.js",
                                "function": f"handler{sig[i]}",
                                "lineno": 12,
                                "colno": 9,
                                "in_app": True,
                                "context_line": "  return current.field.value;",
                            },
                        ],
                    },
                }
            )
        bulk(factory, Event, rows)
        frame = pd.DataFrame(
            {
                "signature_id": sig,
                "release": np.array(versions)[release_index],
                "environment": env,
                "minute": minute,
                "user": user,
            }
        )
        counts.append(frame)
        done += n
        print(f"  {done:,} events written", file=sys.stderr, flush=True)

    every = pd.concat(counts, ignore_index=True)
    per_minute = (
        every.groupby(["signature_id", "release", "environment", "minute"])
        .agg(events=("user", "size"), users=("user", "nunique"))
        .reset_index()
    )
    bulk(
        factory,
        SignatureMinute,
        [
            {
                "signature_id": int(r.signature_id),
                "release": r.release,
                "environment": r.environment,
                "minute": start + timedelta(minutes=int(r.minute)),
                "project_id": project_id,
                "events": int(r.events),
                "users": int(r.users),
                "sessions": int(r.users),
            }
            for r in per_minute.itertuples(index=False)
        ],
    )
    # The totals the digest keeps as it counts (signature_users, signature_release_users, signature_releases,
    # signatures.events/users), computed here from the same events.
    for model, keys in (
        (SignatureUser, ["signature_id", "user"]),
        (SignatureReleaseUser, ["signature_id", "release", "environment", "user"]),
    ):
        seen = every.groupby(keys)["minute"].max().reset_index()
        bulk(
            factory,
            model,
            [
                {
                    **{
                        key: (int(value) if key == "signature_id" else value)
                        for key, value in zip(keys[:-1], r[:-2], strict=True)
                    },
                    "identity": f"u{r.user}",
                    "project_id": project_id,
                    "last_minute": start + timedelta(minutes=int(r.minute)),
                }
                for r in seen.itertuples(index=False)
            ],
        )
    # hours of the clock (as the digest floors them), counted from the hour `start` falls in
    first_hour = start.replace(minute=0)
    hours = every.assign(hour=(every["minute"] + start.minute) // 60)
    per_hour = hours.groupby(["signature_id", "hour", "release", "environment"]).size().reset_index(name="events")
    bulk(
        factory,
        SignatureHour,
        [
            {
                "signature_id": int(r.signature_id),
                "hour": first_hour + timedelta(hours=int(r.hour)),
                "release": r.release,
                "environment": r.environment,
                "project_id": project_id,
                "events": int(r.events),
            }
            for r in per_hour.itertuples(index=False)
        ],
    )
    last_seen = every.groupby(["signature_id", "user"])["minute"].max()
    last_hours = ((last_seen + start.minute) // 60).reset_index(name="hour")
    user_hours = last_hours.groupby(["signature_id", "hour"]).size().reset_index(name="users")
    bulk(
        factory,
        SignatureUserHour,
        [
            {
                "signature_id": int(r.signature_id),
                "hour": first_hour + timedelta(hours=int(r.hour)),
                "project_id": project_id,
                "users": int(r.users),
            }
            for r in user_hours.itertuples(index=False)
        ],
    )
    per_release = (
        every.groupby(["signature_id", "release", "environment"])
        .agg(events=("user", "size"), users=("user", "nunique"), first=("minute", "min"), last=("minute", "max"))
        .reset_index()
    )
    bulk(
        factory,
        SignatureRelease,
        [
            {
                "signature_id": int(r.signature_id),
                "release": r.release,
                "environment": r.environment,
                "project_id": project_id,
                "events": int(r.events),
                "users": int(r.users),
                "first_seen": start + timedelta(minutes=int(r.first)),
                "last_seen": start + timedelta(minutes=int(r.last)),
            }
            for r in per_release.itertuples(index=False)
        ],
    )
    per_environment = (
        every.groupby(["signature_id", "environment"])
        .agg(events=("user", "size"), users=("user", "nunique"))
        .reset_index()
    )
    bulk(
        factory,
        SignatureEnvironment,
        [
            {
                "signature_id": int(r.signature_id),
                "environment": r.environment,
                "project_id": project_id,
                "events": int(r.events),
                "users": int(r.users),
            }
            for r in per_environment.itertuples(index=False)
        ],
    )
    per_signature = every.groupby("signature_id").agg(events=("user", "size"), users=("user", "nunique"))
    with transaction(factory) as session:
        session.execute(
            text("UPDATE signatures SET events = :events, users = :users WHERE id = :id"),
            [{"id": int(i), "events": int(r.events), "users": int(r.users)} for i, r in per_signature.iterrows()],
        )

    session_rows = []
    for m in range(span_minutes):
        release = versions[int(np.clip(np.searchsorted(deploy_minutes, m, side="right") - 1, 0, RELEASES - 1))]
        for environment, sessions in (("production", 900), ("staging", 40)):
            session_rows.append(
                {
                    "project_id": project_id,
                    "release": release,
                    "environment": environment,
                    "minute": start + timedelta(minutes=m),
                    "started": sessions,
                    "errored": sessions // 20,
                    "crashed": 0,
                }
            )
    bulk(factory, SessionMinute, session_rows)

    production = [d for d in deploys if d[2] == "production"]
    anomaly_rows = []
    for n in range(ANOMALIES):
        deploy_id, release, environment = production[n % len(production)]
        at = deploy_times[n % RELEASES] + timedelta(minutes=3 + n % 20)
        anomaly_rows.append(
            {
                "project_id": project_id,
                "key": f"new_signature:{n}",
                "kind": ["new_signature", "regression", "release_error_rate", "spike"][n % 4],
                "state": ["open", "acknowledged", "resolved", "muted"][n % 4],
                "signature_id": int(signature_ids[n % 50]),
                "title": signature_rows[n % 50]["title"],
                "release": release,
                "environment": environment,
                "deploy_id": deploy_id,
                "first_seen": at - timedelta(minutes=2),
                "detected_at": at,
                "crossed_at": at,
                "updated_at": at,
                "events": 120 + n,
                "users": 80 + n,
                "sessions_affected": 90 + n,
                "rate": 0.05,
                "baseline_rate": 0.001,
                "score": 42.0,
                "segments": [{"column": "route", "value": "/billing", "share": 0.9, "baseline_share": 0.2}],
                "suspects": [
                    {
                        "sha": commit_rows[(n % RELEASES) * COMMITS_PER_DEPLOY + k]["sha"],
                        "message": commit_rows[(n % RELEASES) * COMMITS_PER_DEPLOY + k]["message"],
                        "author": "Dana <dev@shop.example.com>",
                        "score": 0.9 - k * 0.1,
                        "evidence": [
                            "changes getEntitlements() in src/api/entitlements.js, which the failing frame imports",
                            "touches the line the top in-app frame points at",
                        ],
                    }
                    for k in range(3)
                ],
                "evidence_unavailable": [],
                "details": {"e_value": 1e9},
            }
        )
    bulk(factory, Anomaly, anomaly_rows)
    return {"token": token, "event_ids": sample_event_ids}


def ids_in(factory: sessionmaker[Session], token: str | None, event_ids: list[str] | None) -> dict[str, Any]:
    """What the requests pick from, read back from the database (so a kept database can be measured
    again with `--database-url`)."""
    with transaction(factory) as session:
        token = token or create_token(session, label="bench")
        signature_ids = list(session.scalars(text("SELECT id FROM signatures ORDER BY id")))
        weights = np.array([1.0 / n**1.1 for n in range(1, len(signature_ids) + 1)])
        if event_ids is None:
            event_ids = list(session.scalars(text("SELECT event_id FROM events WHERE id % 5000 = 7")))
        return {
            "token": token,
            "deploy_ids": list(session.scalars(text("SELECT id FROM deploys ORDER BY id"))),
            "signature_ids": signature_ids,
            "weights": weights / weights.sum(),
            "anomaly_ids": list(session.scalars(text("SELECT id FROM anomalies ORDER BY id"))),
            "event_ids": event_ids,
            "events": session.scalar(text("SELECT count(*) FROM events")),
            "signature_minutes": session.scalar(text("SELECT count(*) FROM signature_minutes")),
        }


# ---- measuring -------------------------------------------------------------------------------------


def start_server(database_url: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")},
        "DETECTOR_DATABASE_URL": database_url,
        "DETECTOR_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "detector.cli", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"detector serve did not start:\n{log_path.read_text()[-3000:]}")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    client: httpx.Client,
    path: Callable[[], str],
    requests: int,
    server_pid: int,
    warmup: int = 10,
    budget: float = 60.0,
) -> dict[str, float]:
    """Latencies of `requests` GETs (fewer if they take more than `budget` seconds: a far-off endpoint
    is reported, with its sample count, instead of holding up the run), and the server's CPU time per
    request, which other work on the machine does not inflate the way it does wall-clock latency."""
    for _ in range(warmup):
        client.get(path()).raise_for_status()
    cpu_before = process_cpu_seconds(server_pid)
    latencies: list[float] = []
    ends = time.perf_counter() + budget
    for _ in range(requests):
        if latencies and time.perf_counter() > ends:
            break
        url = path()
        started = time.perf_counter()
        response = client.get(url)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {url} answered {response.status_code}: {response.text[:300]}")
    cpu_ms = (process_cpu_seconds(server_pid) - cpu_before) * 1000 / len(latencies)
    latencies.sort()
    return {
        "server_cpu_ms": round(cpu_ms, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "max_ms": round(latencies[-1], 1),
        "requests": len(latencies),
    }


def endpoints(ids: dict[str, Any], rng: random.Random) -> dict[str, Callable[[], str]]:
    base = "/api/v1/projects/web"
    sigs, weights = ids["signature_ids"], list(ids["weights"])
    return {
        "projects": lambda: "/api/v1/projects",
        "deploys list": lambda: f"{base}/deploys",
        "deploy detail": lambda: f"{base}/deploys/{rng.choice(ids['deploy_ids'])}",
        "signatures list": lambda: f"{base}/signatures",
        "signatures list (24 h)": lambda: (
            f"{base}/signatures?since={(datetime.now(UTC) - timedelta(days=1)).isoformat()}".replace("+", "%2B")
        ),
        # half the requests on the busiest signatures, half uniformly (the long tail)
        "signature series": lambda: (
            f"{base}/signatures/{rng.choices(sigs, weights)[0] if rng.random() < 0.5 else rng.choice(sigs)}/series"
        ),
        "anomalies list": lambda: f"{base}/anomalies",
        "anomaly detail": lambda: f"{base}/anomalies/{rng.choice(ids['anomaly_ids'])}",
        "event detail": lambda: f"{base}/events/{rng.choice(ids['event_ids'])}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="50,000 events and 50 requests per endpoint")
    parser.add_argument("--database-url", help="measure this already filled database instead (no fill)")
    parser.add_argument("--keep", action="store_true", help="keep the filled database and print its URL")
    args = parser.parse_args()
    if args.quick:
        args.events, args.requests = 50_000, 50
    if args.database_url:
        args.database = "sqlite" if args.database_url.startswith("sqlite") else "postgresql"

    with database(args) as url, tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        filled: dict[str, Any] = {"token": None, "event_ids": None}
        if not args.database_url:
            upgrade(url)
            started = time.perf_counter()
            filled = fill(factory, args.events)
            print(f"filled {args.database} in {time.perf_counter() - started:.0f} s")
            if url.startswith("postgresql"):
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("ANALYZE"))
        ids = ids_in(factory, filled["token"], filled["event_ids"])
        engine.dispose()
        args.events = ids["events"]
        print(
            f"{args.database}: {ids['events']:,} events, {len(ids['signature_ids']):,} signatures, "
            f"{ids['signature_minutes']:,} signature-minutes, {len(ids['deploy_ids'])} deploys, "
            f"{len(ids['anomaly_ids'])} anomalies"
        )
        proc, base_url = start_server(url, Path(tmp) / "serve.log")
        results: dict[str, dict[str, float]] = {}
        try:
            rng = random.Random(1)
            with httpx.Client(
                base_url=base_url, headers={"Authorization": f"Bearer {ids['token']}"}, timeout=30
            ) as client:
                for name, path in endpoints(ids, rng).items():
                    results[name] = measure(client, path, args.requests, proc.pid)
                    r = results[name]
                    verdict = "ok" if r["p95_ms"] < GOAL_P95_MS else "OVER GOAL"
                    print(
                        f"{name:<24} p50 {r['p50_ms']:>7.1f} ms  p95 {r['p95_ms']:>7.1f} ms  "
                        f"max {r['max_ms']:>7.1f} ms  cpu {r['server_cpu_ms']:>5.1f} ms/req  n={r['requests']:<4} "
                        f"{verdict}  (load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        json.dumps(
            {
                "bench": "api_latency",
                "database": args.database,
                "events": args.events,
                "requests_per_endpoint": args.requests,
                "goal_p95_ms": GOAL_P95_MS,
                "all_within_goal": all(r["p95_ms"] < GOAL_P95_MS for r in results.values()),
                "endpoints": results,
            }
        )
    )


if __name__ == "__main__":
    main()
