"""The digest's CPU per event, without HTTP: queue bench events in a fresh database, time `digest_all`.

    python -m bench.digest_cpu [--events 10000] [--batch 500] [--database sqlite|postgresql]
                               [--sessions 0] [--profile out.prof]

Builds the same events as `bench.ingest` (the @sentry/browser fixture's shape, a Zipf mix of 300
signatures), stores them in the raw queue as intake would, then digests them all in this process with
the worker's symbolicator, and prints the process CPU and wall time per event. `--profile` writes a
cProfile of the digest. `--sessions N` also queues N @sentry/browser sessions (an `init` update and a
closing one each, with user agents of a few browsers), interleaved with the events, so the sessions'
counting (per minute and per browser segment) is timed too. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import time
from datetime import UTC, datetime, timedelta

from bench.ingest import build_bodies
from bench.scratch_databases import scratch_database
from detector.intake.digest import digest_all
from detector.intake.envelope import parse_envelope
from detector.sourcemaps.symbolicator import make_symbolicator
from detector.store.db import make_engine, make_sessionmaker, transaction, upgrade
from detector.store.projects import create_project
from detector.store.queue import enqueue_items

USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/14.1.2 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
)


def session_payloads(sessions: int, now: datetime) -> list[bytes]:
    """Two updates (init, then exited or errored) of each of `sessions` browser sessions, as @sentry/browser
    sends them, started over the last hour."""
    payloads: list[bytes] = []
    for k in range(sessions):
        started = (now - timedelta(seconds=3600 * k / max(sessions, 1))).isoformat()
        attrs = {"release": "bench@1.0.0", "environment": "production", "user_agent": USER_AGENTS[k % len(USER_AGENTS)]}
        sid = f"{k:032x}"
        for init, status, errors in ((True, "ok", 0), (False, "errored" if k % 7 == 0 else "exited", int(k % 7 == 0))):
            update = {
                "sid": sid,
                "init": init,
                "started": started,
                "timestamp": started,
                "status": status,
                "errors": errors,
                "attrs": attrs,
            }
            payloads.append(json.dumps(update).encode())
    return payloads


def queue_events(url: str, events: int, sessions: int = 0) -> None:
    """A migrated database at `url` with one project and `events` raw event items queued (and the updates
    of `sessions` sessions among them)."""
    upgrade(url)
    factory = make_sessionmaker(make_engine(url))
    with transaction(factory) as session:
        project = create_project(session, slug="bench", org="bench")
        session.flush()
        project_id = project.id
    bodies, _ = build_bodies(events, 300, 7)
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    for body in bodies:
        envelope = parse_envelope(body, max_items=10)
        rows.append(
            {
                "project_id": project_id,
                "item_type": "event",
                "event_id": envelope.headers["event_id"],
                "received_at": now,
                "payload": envelope.items[0].payload,
            }
        )
    updates = session_payloads(sessions, now)
    if updates:
        step = max(len(rows) // len(updates), 1)
        for k, payload in enumerate(updates):
            rows.insert(
                min((k + 1) * (step + 1) - 1, len(rows)),
                {
                    "project_id": project_id,
                    "item_type": "session",
                    "event_id": None,
                    "received_at": now,
                    "payload": payload,
                },
            )
    with transaction(factory) as session:
        enqueue_items(session, rows)


def measure(url: str, events: int, batch: int, profile: str | None, sessions: int = 0) -> dict[str, object]:
    factory = make_sessionmaker(make_engine(url))
    symbolicate = make_symbolicator()
    profiler = cProfile.Profile() if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    stats = digest_all(factory, batch_size=batch, symbolicate=symbolicate)
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "events": events,
        "digested": stats.events,
        "batch": batch,
        "sessions": sessions,
        "digested_sessions": stats.sessions,
        "digest_cpu_us_per_event": round(cpu / events * 1e6),
        "wall_us_per_event": round(wall / events * 1e6),
        "digest_cpu_us_per_item": round(cpu / (events + 2 * sessions) * 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500, help="items per digest transaction")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--sessions", type=int, default=0, help="browser sessions (two updates each) to queue too")
    parser.add_argument("--profile", help="write a cProfile of the digest to this file")
    args = parser.parse_args()
    with scratch_database(args.database) as url:
        print(f"queueing {args.events} events...", flush=True)
        queue_events(url, args.events, args.sessions)
        print("digesting...", flush=True)
        result = measure(url, args.events, args.batch, args.profile, args.sessions)
    result["database"] = args.database
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
