"""`detector deploy verify`: its polling (with a fake clock), and its exit codes for misuse and an
unreachable server (the verdicts' own exit codes run against a live server in tests/e2e)."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import pytest
import typer

from detector.cli_verify import EXIT_UNUSABLE, parse_duration, poll
from detector.remote import RemoteError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def answers(*items: dict[str, Any] | RemoteError) -> Any:
    queue = list(items)

    def fetch() -> dict[str, Any]:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, RemoteError):
            raise item
        return item

    return fetch


def test_durations_read_as_ci_writes_them() -> None:
    texts = ("15m", "90s", "1h", "500ms", "20")
    assert [parse_duration(t, name="--timeout") for t in texts] == [900, 90, 3600, 0.5, 20]
    with pytest.raises(typer.BadParameter):
        parse_duration("soon", name="--timeout")


def test_poll_waits_out_pending_and_returns_the_first_decided_verdict() -> None:
    clock, shown = Clock(), []
    verdict = poll(
        answers({"status": "pending"}, {"status": "pending"}, {"status": "failing"}),
        wait=300, every=30, show=shown.append, clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    assert verdict["status"] == "failing" and len(shown) == 2 and clock.now == 60


def test_poll_gives_back_pending_at_the_timeout() -> None:
    clock = Clock()
    pending = answers({"status": "pending"})
    verdict = poll(pending, wait=100, every=30, show=lambda _: None, clock=clock, sleep=clock.sleep)
    assert verdict["status"] == "pending" and clock.now <= 100


def test_a_missing_deploy_is_waited_for_then_refused_and_an_outage_is_tried_three_times() -> None:
    clock = Clock()
    later = poll(
        answers(RemoteError("no deploy", status=404), {"status": "healthy"}),
        wait=100, every=10, show=lambda _: None, clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    assert later["status"] == "healthy"
    with pytest.raises(RemoteError, match="no deploy"):
        poll(answers(RemoteError("no deploy", status=404)), wait=30, every=10, show=lambda _: None,
             clock=clock, sleep=clock.sleep)  # fmt: skip
    calls = []

    def down() -> dict[str, Any]:
        calls.append(1)
        raise RemoteError("cannot reach")

    with pytest.raises(RemoteError, match="cannot reach"):
        poll(down, wait=600, every=1, show=lambda _: None, clock=clock, sleep=clock.sleep)
    assert len(calls) == 3
    with pytest.raises(RemoteError, match="401"):
        poll(answers(RemoteError("answered 401", status=401)), wait=600, every=1, show=lambda _: None,
             clock=clock, sleep=clock.sleep)  # fmt: skip


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", "deploy", "verify", *args], capture_output=True, text=True, timeout=60
    )


def test_misuse_and_an_unreachable_server_exit_3_with_a_clear_message() -> None:
    missing = run_verify("--project", "web", "--url", "http://127.0.0.1:9", "--token", "t")
    assert missing.returncode == EXIT_UNUSABLE and "--release" in missing.stderr
    bad_timeout = run_verify(
        "--project", "web", "--release", "web@1", "-e", "production", "--url", "http://127.0.0.1:9", "--token", "t",
        "--timeout", "soon",
    )  # fmt: skip
    assert bad_timeout.returncode == EXIT_UNUSABLE and "duration" in bad_timeout.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    down = run_verify(
        "--project", "web", "--release", "web@1", "-e", "production", "--url", closed, "--token", "t",
        "--timeout", "5s", "--interval", "1s",
    )  # fmt: skip
    assert down.returncode == EXIT_UNUSABLE and "cannot reach the detector" in down.stderr
