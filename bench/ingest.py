"""Intake throughput: realistic browser events posted concurrently to `detector serve` on loopback.

    python -m bench.ingest [--events 30000] [--concurrency 64] [--database sqlite|postgresql]
                           [--servers 1] [--processes 1] [--clients 1] [--digest-batch N]
                           [--no-digest] [--quick]

Starts the server(s) on a fresh database, posts events in the shape of the real @sentry/browser fixture
(~2 KB, a Zipf mix of distinct signatures, many users, one event per request as browsers send them)
from raw keep-alive HTTP/1.1 connections, and prints accepted events/s, digested events/s (end to end:
first request until every event is counted), p50/p99 intake latency, the largest server process's peak
memory, whether every accepted event was counted exactly once, and the CPU time per event of the client,
the API process(es) and the worker. The client processes run on the same machine and compete with the
server for its cores. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.scratch_databases import scratch_database

ROOT = Path(__file__).resolve().parents[1]

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"
FUNCTIONS = [
    "renderPaidFeatures",
    "loadInvoices",
    "applyCoupon",
    "syncCart",
    "openModal",
    "parsePlan",
    "trackClick",
]
ERRORS = [
    ("TypeError", "{}.map is not a function"),
    ("TypeError", "Cannot read properties of undefined (reading '{}')"),
    ("ReferenceError", "{} is not defined"),
    ("RangeError", "Invalid array length in {}"),
    ("Error", "Request to /api/{} failed with 500"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signature_pool(n: int, rng: random.Random) -> list[tuple[str, str, str, str]]:
    pool = []
    for i in range(n):
        kind, template = ERRORS[i % len(ERRORS)]
        name = f"field{i}"
        pool.append((kind, template.format(name), f"module{i % 97}.js", FUNCTIONS[i % len(FUNCTIONS)] + str(i)))
    rng.shuffle(pool)
    return pool


def make_event(sig: tuple[str, str, str, str], user: int, ts: float) -> tuple[str, bytes]:
    kind, value, module, function = sig
    event_id = uuid.uuid4().hex
    event = {
        "event_id": event_id,
        "exception": {
            "values": [
                {
                    "type": kind,
                    "value": value,
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "<anonymous>",
                                "function": "?",
                                "in_app": True,
                                "lineno": 381,
                                "colno": 23,
                            },
                            {
                                "filename": f"http://app.example.com/assets/vendor.{user % 7}a9f3.js",
                                "function": "dispatch",
                                "in_app": False,
                                "lineno": 2,
                                "colno": 1200,
                            },
                            {
                                "filename": f"http://app.example.com/src/{module}",
                                "function": "async window.run",
                                "in_app": True,
                                "lineno": 15,
                                "colno": 33693,
                            },
                            {
                                "filename": f"http://app.example.com/src/{module}",
                                "function": function,
                                "in_app": True,
                                "lineno": 40 + user % 3,
                                "colno": 33436,
                            },
                        ]
                    },
                    "mechanism": {"type": "generic", "handled": True},
                }
            ]
        },
        "level": "error",
        "platform": "javascript",
        "request": {"url": f"http://app.example.com/billing/{user}", "headers": {"User-Agent": UA}},
        "contexts": {
            "trace": {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16]},
            "culture": {"locale": "en-US", "timezone": "UTC", "calendar": "gregory"},
        },
        "user": {"id": f"user-{user}"},
        "timestamp": ts,
        "environment": "production",
        "release": "web@1.2.0",
        "breadcrumbs": {
            "values": [{"category": "ui.click", "message": f"button#buy-{i}", "timestamp": ts} for i in range(4)]
        },
        "sdk": {
            "name": "sentry.javascript.browser",
            "version": "11.12.0",
            "integrations": [
                "EventFilters",
                "FunctionToString",
                "BrowserApiErrors",
                "Breadcrumbs",
                "GlobalHandlers",
                "LinkedErrors",
                "Dedupe",
                "HttpContext",
                "BrowserSession",
            ],
            "packages": [{"name": "npm:@sentry/browser", "version": "11.12.0"}],
        },
    }
    header = {
        "event_id": event_id,
        "sent_at": "2026-11-27T15:05:30.657Z",
        "sdk": {"name": "sentry.javascript.browser", "version": "11.12.0"},
    }
    body = b"\n".join([json.dumps(header).encode(), b'{"type":"event"}', json.dumps(event).encode()])
    return event_id, body


def build_bodies(n: int, n_signatures: int, seed: int) -> tuple[list[bytes], dict[int, int]]:
    """Bodies to post and how many events each signature index should end up with."""
    rng = random.Random(seed)
    pool = signature_pool(n_signatures, rng)
    weights = [1.0 / (i + 1) ** 1.1 for i in range(n_signatures)]
    picks = rng.choices(range(n_signatures), weights=weights, k=n)
    now = time.time() - 120
    bodies = []
    expected: dict[int, int] = {}
    for k, idx in enumerate(picks):
        _, body = make_event(pool[idx], rng.randrange(5000), now + k * 0.001)
        bodies.append(body)
        expected[idx] = expected.get(idx, 0) + 1
    return bodies, expected


async def _post_all(
    host: str, ports: list[int], path: str, bodies: list[bytes], concurrency: int, latencies: list[float]
) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def connection(port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                request = (
                    f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: text/plain;charset=UTF-8\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                started = time.perf_counter()
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                status = int(status_line.split()[1])
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(ports[i % len(ports)]) for i in range(concurrency)))
    return statuses


def _client_process(args: tuple[str, list[int], str, list[bytes], int], out: Any) -> None:
    host, ports, path, bodies, concurrency = args
    latencies: list[float] = []
    cpu_before = time.process_time()
    statuses = asyncio.run(_post_all(host, ports, path, bodies, concurrency, latencies))
    out.put((statuses, latencies, time.process_time() - cpu_before))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _role(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    return "worker" if b"worker" in cmdline else "api"


class Servers:
    def __init__(
        self, database_url: str, servers: int, workdir: Path, *, processes: int = 1, digest: bool = True
    ) -> None:
        self.database_url = database_url
        self.processes = processes
        self.digest = digest
        self.workdir = workdir
        self.ports = [free_port() for _ in range(servers)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "DETECTOR_DATABASE_URL": database_url,
            "DETECTOR_DETECT_SCHEDULE": "off",
            "DETECTOR_PUBLIC_URL": f"http://127.0.0.1:{self.ports[0]}",
        }

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "detector.cli", *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def start(self) -> None:
        self.cli("db", "upgrade")  # the schema has the identity indexes (migration 0002)
        for i, port in enumerate(self.ports):
            log = (self.workdir / f"serve-{port}.log").open("wb")
            cmd = [sys.executable, "-m", "detector.cli", "serve", "--port", str(port)]
            if self.processes > 1:
                cmd += ["--processes", str(self.processes)]
            if i > 0 or not self.digest:
                cmd.append("--no-worker")  # one digest worker; more API processes
            self.procs.append(
                subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        for port in self.ports:
            for _ in range(200):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)

    def pids(self) -> list[int]:
        """Every server process: the `serve` processes and their children (API processes, the worker)."""
        seen: list[int] = []
        todo = [proc.pid for proc in self.procs]
        while todo:
            pid = todo.pop()
            if pid not in seen:
                seen.append(pid)
                todo += _children(pid)
        return seen

    def cpu_seconds(self) -> dict[int, float]:
        return {pid: _cpu_seconds(pid) for pid in self.pids()}

    def peak_memory_mb(self) -> float:
        """The largest peak resident set of any one server process."""
        peak = 0.0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
            except OSError:
                continue
        return peak

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    with scratch_database(args.database, prefix="bench") as database_url:
        return _run(args, workdir, database_url)


def _run(args: argparse.Namespace, workdir: Path, database_url: str) -> dict[str, Any]:
    servers = Servers(database_url, args.servers, workdir, processes=args.processes, digest=not args.no_digest)
    if args.digest_batch:
        servers.env["DETECTOR_DIGEST_BATCH_SIZE"] = str(args.digest_batch)
    servers.start()
    try:
        project = json.loads(servers.cli("project", "create", "bench", "--json").strip().splitlines()[-1])
        token = json.loads(servers.cli("token", "create", "--json").strip().splitlines()[-1])["token"]
        print(f"building {args.events} events ({args.signatures} signatures)...", file=sys.stderr)
        bodies, expected = build_bodies(args.events, args.signatures, seed=7)
        mean_size = sum(len(b) for b in bodies) / len(bodies)
        path = f"/api/{project['id']}/envelope/?sentry_key={project['public_key']}&sentry_version=7"
        share = [bodies[i :: args.clients] for i in range(args.clients)]
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        print(
            f"posting with {args.clients} client process(es) x {args.concurrency} connections...",
            file=sys.stderr,
        )
        cpu_start = servers.cpu_seconds()
        started = time.perf_counter()
        procs = [
            ctx.Process(target=_client_process, args=(("127.0.0.1", servers.ports, path, part, args.concurrency), out))
            for part in share
        ]
        for proc in procs:
            proc.start()
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        client_cpu = 0.0
        for _ in procs:
            s, lat, cpu = out.get()
            for k, v in s.items():
                statuses[k] = statuses.get(k, 0) + v
            latencies += lat
            client_cpu += cpu
        for proc in procs:
            proc.join()
        post_seconds = time.perf_counter() - started
        cpu_posted = servers.cpu_seconds()
        accepted = statuses.get(200, 0)
        auth = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{servers.ports[0]}"
        counted = 0
        deadline = time.time() + (600 if not args.no_digest else 0)
        while time.time() < deadline:
            health = httpx.get(base + "/healthz", timeout=10).json()
            if health.get("queue_depth") == 0:
                break
            time.sleep(0.2)
        digest_seconds = time.perf_counter() - started
        cpu_end = servers.cpu_seconds()
        roles = {pid: _role(pid) for pid in cpu_end}
        intake_cpu = sum(cpu_posted.get(p, 0.0) - cpu_start.get(p, 0.0) for p in cpu_end if roles[p] == "api")
        worker_cpu = sum(cpu_end[p] - cpu_start.get(p, 0.0) for p in cpu_end if roles[p] == "worker")
        items, cursor = [], None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = httpx.get(f"{base}/api/v1/projects/bench/signatures", params=params, headers=auth, timeout=60).json()
            items += page["items"]
            cursor = page["next"]
            if not cursor:
                break
        counted = sum(item["events"] for item in items) if not args.no_digest else 0
        latencies.sort()
        summary = {
            "database": args.database,
            "servers": args.servers,
            "events": args.events,
            "processes": args.processes,
            "clients": args.clients,
            "digest_batch": args.digest_batch or "default",
            "mean_event_bytes": round(mean_size),
            "signatures_expected": len(expected),
            "signatures_found": len(items),
            "accepted": accepted,
            "refused": {str(k): v for k, v in statuses.items() if k != 200},
            "accepted_per_s": round(accepted / post_seconds),
            "digested_per_s": round(counted / digest_seconds) if counted else None,
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
            "counted": counted,
            "exactly_once": counted == accepted and accepted == args.events if not args.no_digest else None,
            "server_peak_mb": round(servers.peak_memory_mb(), 1),
            # CPU per event, whatever else runs on the machine: 1e6 / (sum of these) is the events/s the
            # whole pipeline (client included) could reach on one otherwise idle core.
            "client_cpu_us_per_event": round(1e6 * client_cpu / args.events),
            "intake_cpu_us_per_event": round(1e6 * intake_cpu / args.events),
            "digest_cpu_us_per_event": round(1e6 * worker_cpu / args.events) if counted else None,
            "load_average": os.getloadavg()[0],
        }
        return summary
    finally:
        servers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--signatures", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--servers", type=int, default=1, help="API processes (one also digests)")
    parser.add_argument("--processes", type=int, default=1, help="API processes per `serve` (--processes)")
    parser.add_argument("--no-digest", action="store_true", help="intake alone: no worker, nothing counted")
    parser.add_argument(
        "--digest-batch", type=int, default=None, help="DETECTOR_DIGEST_BATCH_SIZE for the worker (default: its own)"
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="5,000 events")
    args = parser.parse_args()
    if args.quick:
        args.events = 5000
    summary = run(args)
    for key, value in summary.items():
        print(f"{key:>20}: {value}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
