"""The digest's CPU per event, without HTTP: queue bench events in a fresh database, time `digest_all`.

    python -m bench.digest_cpu [--events 10000] [--batch 500] [--database sqlite|postgresql]
                               [--profile out.prof]

Builds the same events as `bench.ingest` (the @sentry/browser fixture's shape, a Zipf mix of 300
signatures), stores them in the raw queue as intake would, then digests them all in this process with
the worker's symbolicator, and prints the process CPU and wall time per event. `--profile` writes a
cProfile of the digest. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import time
from datetime import UTC, datetime

from bench.ingest import build_bodies
from bench.scratch_databases import scratch_database
from detector.intake.digest import digest_all
from detector.intake.envelope import parse_envelope
from detector.sourcemaps.symbolicator import make_symbolicator
from detector.store.db import make_engine, make_sessionmaker, transaction, upgrade
from detector.store.projects import create_project
from detector.store.queue import enqueue_items


def queue_events(url: str, events: int) -> None:
    """A migrated database at `url` with one project and `events` raw event items queued."""
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
    with transaction(factory) as session:
        enqueue_items(session, rows)


def measure(url: str, events: int, batch: int, profile: str | None) -> dict[str, object]:
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
        "digest_cpu_us_per_event": round(cpu / events * 1e6),
        "wall_us_per_event": round(wall / events * 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500, help="items per digest transaction")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--profile", help="write a cProfile of the digest to this file")
    args = parser.parse_args()
    with scratch_database(args.database) as url:
        print(f"queueing {args.events} events...", flush=True)
        queue_events(url, args.events)
        print("digesting...", flush=True)
        result = measure(url, args.events, args.batch, args.profile)
    result["database"] = args.database
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
