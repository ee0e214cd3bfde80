"""Real faults for tests: a throwaway PostgreSQL cluster that can be stopped and started again, a tiny
file system that fills up, and events sent to a server the way an SDK's `store` request sends them."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from detector.store.models import Project


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own (initdb in a temporary directory, another port), so a test can
    restart the server for real without touching the one other tests share. PostgreSQL refuses to run
    as root, so as root the cluster belongs to the `postgres` system user."""

    def __init__(self) -> None:
        self.initdb = shutil.which("initdb")
        self.pg_ctl = shutil.which("pg_ctl")
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="detector-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self._as: list[str] = []
        # util-linux puts runuser in sbin, which a CI job's PATH often leaves out
        self._runuser = shutil.which("runuser", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")

    @property
    def available(self) -> str | None:
        """None when a cluster can be made here, else why not (a reason to skip)."""
        if not self.initdb or not self.pg_ctl:
            return "initdb and pg_ctl are not on PATH"
        if os.geteuid() == 0:
            if self._runuser is None:
                return "running as root without runuser to become the postgres user"
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no postgres user to own the cluster"
        return None

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def create(self) -> ThrowawayPostgres:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
            self._as = [str(self._runuser), "-u", "postgres", "--"]
        assert self.initdb is not None
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        return self

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        assert self.pg_ctl is not None
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown, as a restart does: connections are ended, new ones refused until `start`."""
        assert self.pg_ctl is not None
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
                self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class TinyDisk:
    """A tmpfs of `size_mb` mounted on a temporary directory: a file system that really fills up. Needs
    the right to mount (root in a container that allows it); `available` says why not otherwise."""

    def __init__(self, size_mb: int) -> None:
        self.size_mb = size_mb
        self.path = Path(tempfile.mkdtemp(prefix="detector-disk-"))
        self.mounted = False

    def mount(self) -> str | None:
        """Mount it; None on success, else why it could not be (a reason to skip)."""
        if shutil.which("mount") is None:
            return "no mount command"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}"
        self.mounted = True
        return None

    def fill(self) -> Path:
        """Write a ballast file until the disk is full; returns it (delete it to free the space)."""
        ballast = self.path / "ballast"
        descriptor = os.open(ballast, os.O_WRONLY | os.O_CREAT)
        try:
            for size in (65536, 512, 1):  # unbuffered, down to the last byte: nothing is left to fail on close
                try:
                    while True:
                        os.write(descriptor, b"\0" * size)
                except OSError:
                    pass  # ENOSPC at this size; try smaller
        finally:
            os.close(descriptor)
        return ballast

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path).free

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False
        shutil.rmtree(self.path, ignore_errors=True)


def store_event(
    base_url: str, project: Project, message: str, *, padding: int = 0, timeout: float = 10.0
) -> httpx.Response:
    """One error event to `/api/{id}/store/`, as sentry-sdk's store request sends it (with `padding` bytes
    of extra data, to fill a disk faster); a 200 answer's JSON `id` is its event id."""
    event = {"event_id": uuid.uuid4().hex, "message": message, "level": "error", "platform": "python"}
    if padding:
        event["extra"] = {"padding": "x" * padding}
    return httpx.post(
        f"{base_url}/api/{project.id}/store/?sentry_key={project.public_key}&sentry_version=7",
        json=event,
        timeout=timeout,
    )


def wait_until(predicate: object, timeout: float, every: float = 0.05) -> float | None:
    """Seconds until `predicate()` is truthy, polling every `every` s; None if it never was in `timeout`."""
    assert callable(predicate)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(every)
    return None
