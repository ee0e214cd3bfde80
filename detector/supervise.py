"""A child process kept running: `detector serve` starts its worker (and extra API processes) through one.

When the child exits without being asked to (a crash, the OOM killer, a `kill -9`), it is started again
after a backoff that doubles from `min_backoff` to `max_backoff` while it keeps failing, and starts over
once a child has run `stable_after` seconds. Every exit and restart is logged.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


def describe_exit(returncode: int) -> str:
    """`exit code 1`, or `signal SIGKILL` for a child a signal ended (Popen's negative return codes)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def next_backoff(previous: float | None, ran_for: float, *, low: float, high: float, stable_after: float) -> float:
    """The wait before the next start: `low` after a child that ran `stable_after` seconds (or the first
    time), else twice the previous wait, at most `high`."""
    if previous is None or ran_for >= stable_after:
        return low
    return max(low, min(high, previous * 2))


class Supervisor:
    """Runs `argv` as a child process and restarts it whenever it exits unasked (see the module)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        min_backoff: float = 1.0,
        max_backoff: float = 60.0,
        stable_after: float = 60.0,
        keep_running: Callable[[], bool] = lambda: True,
    ) -> None:
        """`keep_running() -> False` (the parent is shutting down) means a child's exit is not restarted:
        a Ctrl-C reaches the children of a terminal's process group before the parent stops them."""
        self.name = name
        self.keep_running = keep_running
        self.argv = list(argv)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # between a restart and `stop`, so no child outlives the supervisor
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def start(self) -> None:
        with self._lock:
            self._spawn()
        self._thread = threading.Thread(target=self._watch, name=f"supervise-{self.name}", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(self.argv)
        self._started_at = time.monotonic()

    def _watch(self) -> None:
        backoff: float | None = None
        while True:
            proc = self._proc
            assert proc is not None
            returncode = proc.wait()
            if self._stopping.is_set() or not self.keep_running():
                return
            ran_for = time.monotonic() - self._started_at
            backoff = next_backoff(
                backoff, ran_for, low=self.min_backoff, high=self.max_backoff, stable_after=self.stable_after
            )
            log.warning(
                "%s process %d ended (%s) after %.1f s; starting it again in %.1f s",
                self.name, proc.pid, describe_exit(returncode), ran_for, backoff,
            )  # fmt: skip
            if self._stopping.wait(backoff) or not self.keep_running():
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn()
                except OSError as exc:  # the thread's boundary: try again after the next backoff
                    log.error("%s process could not be started: %s", self.name, exc)
                    continue
                self.restarts += 1
            log.warning("%s process restarted as %d (restart %d)", self.name, self.pid, self.restarts)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop supervising and end the child: SIGTERM, then SIGKILL after `timeout` seconds."""
        stop_all([self], timeout)

    def _terminate(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        return proc

    def _reap(self, proc: subprocess.Popen[bytes] | None, deadline: float) -> None:
        if proc is not None:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)


def stop_all(supervisors: Sequence[Supervisor], timeout: float = 30.0) -> None:
    """Stop every supervisor's child at once (SIGTERM to all, then wait), SIGKILL for any left at `timeout`."""
    procs = [supervisor._terminate() for supervisor in supervisors]
    deadline = time.monotonic() + timeout
    for supervisor, proc in zip(supervisors, procs, strict=True):
        supervisor._reap(proc, deadline)
