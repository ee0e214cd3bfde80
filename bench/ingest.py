"""Intake throughput: realistic browser events posted concurrently to `detector serve` on loopback.

    python -m bench.ingest [--events 30000] [--concurrency 64] [--database sqlite|postgresql]
                           [--servers 1] [--processes 1] [--clients 1] [--digest-batch N]
                           [--rate N] [--no-digest] [--quick]

Starts the server(s) on a fresh database, posts events in the shape of the real @sentry/browser fixture
(~2 KB, a Zipf mix of distinct signatures, many users, one event per request as browsers send them)
from raw keep-alive HTTP/1.1 connections, and prints accepted events/s, digested events/s (end to end:
first request until every event is counted), p50/p99 intake latency, the largest server process's peak
memory, whether every accepted event was counted exactly once, and the CPU time per event of the client,
the API process(es) and the worker. The client processes run on the same machine and compete with the
server for its cores. The last line is one JSON object.

By default every connection sends its next request as soon as the last one is answered (the most the
server takes). `--rate N` offers N events/s instead, at even intervals, as traffic arrives (open loop):
a request's latency counts from the moment it was due, so a server that falls behind shows it in p99
rather than by slowing the client down. A sustained rate is one the digest keeps up with: the queue's
largest depth while posting and the seconds it takes to drain after the last request are printed too.
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
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import uvloop

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


def build_requests(host: str, path: str, bodies: list[bytes]) -> list[bytes]:
    """Each body as the complete HTTP/1.1 request bytes (head and body), built before the clock starts."""
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: "
    prefix = head.encode()
    return [b"".join((prefix, str(len(body)).encode(), b"\r\n\r\n", body)) for body in bodies]


class _Pace:
    """When each request is due at `rate` requests/s, from the first one (shared by a process's connections)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.start = 0.0
        self.sent = 0

    def next_due(self) -> float:
        if not self.sent:
            self.start = time.perf_counter()
        due = self.start + self.sent * self.interval
        self.sent += 1
        return due


class _Connection(asyncio.Protocol):
    """One keep-alive connection posting requests one at a time (no pipelining): the next request is sent
    once the whole response to the previous one (head and its Content-Length body) has arrived.

    A protocol on uvloop rather than StreamReader.readline loops: the load generator shares the server's
    cores, and the streams cost 69-90 µs of CPU per request (against a no-op server), this 46-55 µs, of
    which the parsing here is ~3 µs and the rest the loop and the kernel's loopback TCP."""

    def __init__(
        self,
        requests: Iterator[bytes],
        latencies: list[float],
        statuses: dict[int, int],
        done: asyncio.Future[None],
        pace: _Pace | None = None,
    ) -> None:
        self.requests = requests
        self.pace = pace
        self.latencies = latencies
        self.statuses = statuses
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.need = 0  # bytes of the whole response, once its head has arrived
        self.status = 0
        self.started = 0.0
        self.in_flight = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._send_next()

    def _send_next(self) -> None:
        assert self.transport is not None
        request = next(self.requests, None)
        if request is None:
            self.in_flight = False
            self.transport.close()
            return
        self.in_flight = True
        if self.pace is None:
            self.started = time.perf_counter()
            self.transport.write(request)
            return
        # Open loop: the latency counts from when the request was due, even if it went out late.
        self.started = self.pace.next_due()
        delay = self.started - time.perf_counter()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.transport.write, request)
        else:
            self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception as exc:  # a malformed response ends the run instead of leaving it waiting
            self._fail(f"{type(exc).__name__}: {exc}")

    def _received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.need:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            head = buffer[:end].lower()
            if not head.startswith(b"http/1.1 ") or b"transfer-encoding:" in head:
                self._fail(f"unexpected response head: {buffer[:end]!r}")
                return
            self.status = int(head[9:12])
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 17)
                length = int(head[at + 17 : stop if stop >= 0 else None])
            self.need = end + 4 + length
        if len(buffer) < self.need:
            self.buffer = buffer
            return
        if len(buffer) > self.need:
            self._fail(f"{len(buffer) - self.need} bytes after the response")
            return
        self.latencies.append(time.perf_counter() - self.started)
        self.statuses[self.status] = self.statuses.get(self.status, 0) + 1
        self.buffer = b""
        self.need = 0
        self._send_next()

    def _fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(reason))
        assert self.transport is not None
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection closed mid-request: {exc}"))
        elif not self.done.done():
            self.done.set_result(None)


async def _post_all(
    host: str,
    ports: list[int],
    path: str,
    bodies: list[bytes],
    concurrency: int,
    latencies: list[float],
    requests: list[bytes] | None = None,
    rate: float | None = None,
) -> dict[int, int]:
    """Post every body (or prebuilt request) over `concurrency` keep-alive connections, one request in
    flight per connection; `latencies` gets each request's time from send to its full response."""
    statuses: dict[int, int] = {}
    shared = iter(requests if requests is not None else build_requests(host, path, bodies))
    pace = _Pace(rate) if rate else None
    loop = asyncio.get_running_loop()
    dones = []
    for i in range(concurrency):
        done: asyncio.Future[None] = loop.create_future()
        dones.append(done)
        await loop.create_connection(
            lambda done=done: _Connection(shared, latencies, statuses, done, pace), host, ports[i % len(ports)]
        )
    await asyncio.gather(*dones)
    return statuses


def _client_process(args: tuple[str, list[int], list[bytes], int, float | None], out: Any) -> None:
    host, ports, requests, concurrency, rate = args
    latencies: list[float] = []
    cpu_before = time.process_time()
    statuses = uvloop.run(_post_all(host, ports, "", [], concurrency, latencies, requests, rate))
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


class _DepthWatch:
    """Samples the raw queue's depth (`/healthz`) every second while the clients post; keeps the largest.
    Not more often: the count reads the queued rows (~2 KB each), which costs the server CPU."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.deepest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(1.0):
                try:
                    self.deepest = max(self.deepest, int(client.get(self.url).json()["queue_depth"]))
                except (httpx.HTTPError, KeyError, ValueError):
                    continue


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
        requests = build_requests("127.0.0.1", path, bodies)
        share = [requests[i :: args.clients] for i in range(args.clients)]
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        print(
            f"posting with {args.clients} client process(es) x {args.concurrency} connections...",
            file=sys.stderr,
        )
        per_client_rate = args.rate / args.clients if args.rate else None
        depth = _DepthWatch(f"http://127.0.0.1:{servers.ports[0]}/healthz")
        cpu_start = servers.cpu_seconds()
        started = time.perf_counter()
        depth.start()
        procs = [
            ctx.Process(
                target=_client_process,
                args=(("127.0.0.1", servers.ports, part, args.concurrency, per_client_rate), out),
            )
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
        depth.stop()
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
            "offered_per_s": args.rate or "as fast as answered",
            "accepted_per_s": round(accepted / post_seconds),
            "digested_per_s": round(counted / digest_seconds) if counted else None,
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
            "max_queue_depth": depth.deepest if not args.no_digest else None,
            "drain_s": round(digest_seconds - post_seconds, 2) if not args.no_digest else None,
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
    parser.add_argument("--rate", type=float, default=None, help="offer this many events/s (open loop)")
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
