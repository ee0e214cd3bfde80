"""`detector serve` keeps its worker alive, and `/healthz` says 503, with the reason, whenever events sent
now would not be stored or digested (issue 18, item 2): the worker is gone, the queue's oldest item is
too old, or the database cannot be written. Everything is real: `detector serve` on loopback, its worker
child killed with SIGKILL, events sent with sentry-sdk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import sentry_sdk
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from detector.health import unhealthy_reasons
from detector.store.models import Event, Project
from tests.conftest import BACKEND, LiveServer, wait_for

END_SESSIONS = text(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
)
FAST_HEARTBEAT = {"DETECTOR_WORKER_HEARTBEAT_SECONDS": "0.3", "DETECTOR_WORKER_STALE_AFTER_SECONDS": "1.5"}


def worker_children(server: LiveServer) -> list[psutil.Process]:
    assert server.proc is not None
    return [
        child
        for child in psutil.Process(server.proc.pid).children()
        if child.is_running() and child.status() != psutil.STATUS_ZOMBIE and "worker" in child.cmdline()
    ]


def health(server: LiveServer) -> httpx.Response:
    return httpx.get(server.url + "/healthz", timeout=30)


def send_events(server: LiveServer, project: Project, count: int, release: str) -> None:
    host = server.url.removeprefix("http://")
    client = sentry_sdk.Client(
        f"http://{project.public_key}@{host}/{project.id}", release=release, default_integrations=False
    )
    for index in range(count):
        client.capture_event({"message": f"checkout failed {index}", "level": "error"})
    client.flush(timeout=10)
    client.close()


def events_stored(factory: sessionmaker[Session], release: str) -> int:
    with factory() as session:
        return session.scalar(select(func.count(Event.id)).where(Event.release == release)) or 0


@pytest.fixture
def server(database_url: str, tmp_path: Path, project: Project) -> Iterator[LiveServer]:
    env = {**FAST_HEARTBEAT, "DETECTOR_WORKER_RESTART_BACKOFF_SECONDS": "3"}
    live = LiveServer(database_url, tmp_path, extra_env=env).start()
    yield live
    live.stop()


def test_a_killed_worker_is_restarted_and_healthz_says_so_meanwhile(
    server: LiveServer, project: Project, factory: sessionmaker[Session]
) -> None:
    assert wait_for(lambda: health(server).json().get("workers_alive") == 1, timeout=60), health(server).text
    (first,) = worker_children(server)
    send_events(server, project, 5, "web@1")
    assert wait_for(lambda: events_stored(factory, "web@1") == 5, timeout=30)

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # The restart waits 3 s (DETECTOR_WORKER_RESTART_BACKOFF_SECONDS): past the heartbeat's 1.5 s
    down = wait_for(lambda: health(server).status_code == 503, timeout=10, every=0.1)
    assert down, "the dead worker was reported healthy"
    answer = health(server).json()
    assert answer["status"] == "unavailable" and answer["workers_alive"] == 0
    assert "no worker is alive" in answer["detail"]
    send_events(server, project, 5, "web@2")  # accepted meanwhile: intake does not need the worker

    assert wait_for(lambda: health(server).status_code == 200, timeout=60), health(server).text
    (second,) = worker_children(server)
    assert second.pid != first.pid
    assert wait_for(lambda: events_stored(factory, "web@2") == 5, timeout=30), "the new worker drains the queue"
    log = server.log()
    assert f"worker process {first.pid} ended (signal SIGKILL)" in log
    assert f"worker process restarted as {second.pid} (restart 1)" in log


def test_healthz_answers_503_when_the_oldest_queued_item_is_too_old(
    database_url: str, tmp_path: Path, project: Project
) -> None:
    env = {**FAST_HEARTBEAT, "DETECTOR_HEALTH_MAX_QUEUE_AGE_SECONDS": "1"}
    live = LiveServer(database_url, tmp_path, extra_env=env)
    live.start()
    try:
        assert wait_for(lambda: health(live).json().get("workers_alive") == 1, timeout=60)
        (worker,) = worker_children(live)
        worker.send_signal(signal.SIGSTOP)  # a stuck worker: its heartbeat thread stops too
        try:
            send_events(live, project, 1, "web@1")
            assert wait_for(lambda: health(live).status_code == 503, timeout=10)
            reasons = health(live).json()["reasons"]
            assert any("the oldest queued item is" in reason for reason in reasons), reasons
        finally:
            worker.send_signal(signal.SIGCONT)
        assert wait_for(lambda: health(live).status_code == 200, timeout=30), health(live).text
    finally:
        live.stop()


def test_a_lone_worker_killed_beside_api_only_servers_is_reported_gone(
    database_url: str, tmp_path: Path, project: Project
) -> None:
    # API replicas without a worker (`serve --no-worker`) and a `detector worker` of their own: the
    # heartbeat is in the database, so every replica sees the worker go.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    env.update({"DETECTOR_DATABASE_URL": database_url, **FAST_HEARTBEAT})
    replicas = [LiveServer(database_url, tmp_path, extra_env=FAST_HEARTBEAT) for _ in range(2)]
    for replica in replicas:
        replica_start_without_worker(replica)
    worker = subprocess.Popen([sys.executable, "-m", "detector.cli", "worker"], env=env, start_new_session=True)
    try:
        for replica in replicas:
            assert wait_for(lambda r=replica: health(r).json().get("workers_alive") == 1, timeout=60)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        for replica in replicas:
            assert wait_for(lambda r=replica: health(r).status_code == 503, timeout=10)
            assert "no worker is alive" in health(replica).json()["detail"]
    finally:
        if worker.poll() is None:
            worker.kill()
        for replica in replicas:
            replica.stop()


def replica_start_without_worker(replica: LiveServer) -> None:
    """`LiveServer.start`, with `--no-worker`."""
    log = replica.log_path.open("wb")
    argv = [sys.executable, "-m", "detector.cli", "serve", "--host", "127.0.0.1", "--port", str(replica.port)]
    replica.proc = subprocess.Popen(
        [*argv, "--no-worker"], env=replica.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if health(replica).status_code in (200, 503):
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(replica.log())


def test_unhealthy_reasons_name_each_cause() -> None:
    healthy = unhealthy_reasons(
        oldest_queued_seconds=2.0, max_queue_age_seconds=300, workers_alive=1, last_worker_heartbeat_seconds=1.0
    )
    assert healthy == []
    never_had_a_worker = unhealthy_reasons(
        oldest_queued_seconds=None, max_queue_age_seconds=300, workers_alive=0, last_worker_heartbeat_seconds=None
    )
    assert never_had_a_worker == [], "an empty queue nobody ever digested is not an outage"
    both = unhealthy_reasons(
        oldest_queued_seconds=301.0, max_queue_age_seconds=300, workers_alive=0, last_worker_heartbeat_seconds=42.0
    )
    assert both == [
        "no worker is alive: the last heartbeat was 42 s ago, so nothing digests the queue",
        "the oldest queued item is 301 s old, over the 300 s of DETECTOR_HEALTH_MAX_QUEUE_AGE_SECONDS",
    ]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system of its own (tmpfs; needs the right to mount, else the test is skipped)."""
    where = tmp_path / "tiny"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.skipif(BACKEND != "sqlite", reason="a full disk under the SQLite file")
def test_healthz_answers_503_while_the_disk_under_sqlite_is_full(tiny_disk: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tiny_disk / 'detector.db'}"
    live = LiveServer(url, tmp_path, extra_env={**FAST_HEARTBEAT, "DETECTOR_HEALTH_MIN_FREE_DISK_MB": "0.5"}).start()
    try:
        assert wait_for(lambda: health(live).json().get("workers_alive") == 1, timeout=60), health(live).text
        filler = tiny_disk / "filler"
        descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:  # every free block taken (unbuffered: nothing is left to fail on close)
                os.write(descriptor, b"\0" * 65536)
        except OSError:
            pass
        finally:
            os.close(descriptor)
        try:
            assert wait_for(lambda: health(live).status_code == 503, timeout=20), health(live).text
            assert "the disk holding the database has 0.0 MB free" in health(live).json()["detail"]
        finally:
            filler.unlink()
        assert wait_for(lambda: health(live).status_code == 200, timeout=30), health(live).text
    finally:
        live.stop()
