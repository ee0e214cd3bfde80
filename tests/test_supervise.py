"""The supervisor's pure parts: how long it waits before a restart, and how it names an exit."""

from __future__ import annotations

import signal
import sys
import time

from detector.supervise import Supervisor, describe_exit, next_backoff
from tests.conftest import wait_for


def test_the_backoff_doubles_while_the_child_keeps_dying_and_resets_once_it_ran_a_while() -> None:
    waits: list[float] = []
    previous = None
    for ran_for in (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 120.0, 0.5):
        previous = next_backoff(previous, ran_for, low=1.0, high=10.0, stable_after=60.0)
        waits.append(previous)
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 1.0, 2.0]
    assert next_backoff(30.0, 0.1, low=90.0, high=60.0, stable_after=60.0) == 90.0, "never below the low bound"


def test_exits_are_named_by_code_or_by_signal() -> None:
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"


def test_a_child_that_exits_is_started_again_and_stop_ends_the_last_one() -> None:
    supervisor = Supervisor("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], min_backoff=0.1)
    supervisor.start()
    try:
        first = supervisor._proc
        assert first is not None
        first.send_signal(signal.SIGKILL)
        assert wait_for(lambda: supervisor.restarts == 1 and supervisor.pid != first.pid, timeout=10)
    finally:
        started = time.monotonic()
        supervisor.stop(timeout=10)
    last = supervisor._proc
    assert last is not None and last.poll() == -signal.SIGTERM and time.monotonic() - started < 10
    time.sleep(0.3)
    assert supervisor.restarts == 1, "a stopped supervisor starts nothing"
