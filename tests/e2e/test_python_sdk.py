"""sentry-sdk (Python) → `detector serve` → signatures, events and release-health sessions.

Each scenario runs the real SDK in a subprocess (`python -c`), so its global state (client, scopes, the
session flusher's thread) never leaks into the test process or into the next scenario, and flushes
before it exits. The app code it reports from is a small module written next to it, so frames are
in-app and carry real file names and line numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import ReadApi, SessionTable

pytestmark = pytest.mark.slow

RELEASE = "api@2.0.0"
ENVIRONMENT = "staging"

BILLING_MODULE = """
PLANS = {"free": 0, "pro": 20}


def price_for(account):
    return PLANS[account["plan"]]
"""
"""The app's code: `price_for({"plan": "team"})` raises KeyError('team') from the `return` line."""
RAISING_STATEMENT = '    return PLANS[account["plan"]]'

SCENARIO = textwrap.dedent(
    """
    import json, os, sys
    import sentry_sdk
    from sentry_sdk.sessions import track_session
    import billing

    sentry_sdk.init(
        dsn=os.environ["SCENARIO_DSN"],
        release=os.environ["SCENARIO_RELEASE"],
        environment=os.environ["SCENARIO_ENVIRONMENT"],
        auto_session_tracking=True,
    )
    sent = {"exceptions": [], "messages": []}

    def charge(plan):
        try:
            return billing.price_for({"plan": plan})
        except KeyError:
            sent["exceptions"].append(sentry_sdk.capture_exception())

    # Release health, application mode (one "session" item each): a healthy session with an info
    # message in it, and one that captured an error.
    sentry_sdk.start_session()
    sent["messages"].append(sentry_sdk.capture_message("Checkout started for order 8812 on plan pro"))
    charge("pro")
    sentry_sdk.end_session()
    sentry_sdk.start_session()
    charge(os.environ["SCENARIO_PLAN"])
    sentry_sdk.end_session()

    # Request mode, as the web framework integrations do it (one "sessions" aggregate): three requests,
    # the second of which fails.
    for plan in ["free", os.environ["SCENARIO_PLAN"], "pro"]:
        with sentry_sdk.isolation_scope() as scope, track_session(scope, session_mode="request"):
            charge(plan)

    sentry_sdk.flush(timeout=10)
    print(json.dumps(sent))
    """
)


def run_scenario(app_dir: Path, dsn: str, *, plan: str, billing_prefix: str = "") -> dict[str, list[str]]:
    """Run SCENARIO with `billing.py` (after `billing_prefix`) in `app_dir`; the ids of what it captured."""
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "billing.py").write_text(billing_prefix + BILLING_MODULE)
    result = subprocess.run(
        [sys.executable, "-c", SCENARIO],
        cwd=app_dir,
        env={
            # The SDK would read SENTRY_DSN, SENTRY_RELEASE... from the environment: keep the test's own.
            **{k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "DETECTOR_"))},
            "PYTHONPATH": str(app_dir),
            "SCENARIO_DSN": dsn,
            "SCENARIO_RELEASE": RELEASE,
            "SCENARIO_ENVIRONMENT": ENVIRONMENT,
            "SCENARIO_PLAN": plan,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"scenario failed:\n{result.stdout}\n{result.stderr}"
    sent: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return sent


def raising_line(source: str) -> int:
    """The 1-based line of `source` that raises: the `return PLANS[...]` of `price_for`."""
    return source.splitlines().index(RAISING_STATEMENT) + 1


def innermost_frame(event: dict[str, Any]) -> dict[str, Any]:
    frames: list[dict[str, Any]] = event["exception"]["frames"]
    return frames[-1]


def test_exception_message_and_sessions_are_stored(
    dsn: str, read_api: ReadApi, session_table: SessionTable, tmp_path: Path
) -> None:
    sent = run_scenario(tmp_path / "app", dsn, plan="team")
    assert len(sent["exceptions"]) == 2 and len(sent["messages"]) == 1
    events = read_api.wait_for_events(sent["exceptions"] + sent["messages"])
    signatures = read_api.wait_for_signatures(lambda sigs: sum(s["events"] for s in sigs) == 3)
    by_id = {s["id"]: s for s in signatures}
    assert len(signatures) == 2, [s["title"] for s in signatures]

    errors = [events[i] for i in sent["exceptions"]]
    for event in errors:
        assert event["platform"] == "python"
        assert event["release"] == RELEASE and event["environment"] == ENVIRONMENT
        assert event["exception"]["type"] == "KeyError"
        assert event["exception"]["value"] == "'team'"
        frame = innermost_frame(event)
        assert frame["module"] == "billing" and frame["function"] == "price_for", frame
        assert frame["lineno"] == raising_line(BILLING_MODULE) and frame["in_app"] is True, frame
        assert frame["context_line"] == RAISING_STATEMENT
    assert errors[0]["signature_id"] == errors[1]["signature_id"]
    key_error = by_id[errors[0]["signature_id"]]
    assert key_error["type"] == "KeyError"
    assert key_error["title"].startswith("KeyError: "), key_error
    assert key_error["culprit"].endswith("price_for"), key_error
    assert key_error["events"] == 2 and key_error["releases"] == [RELEASE]

    message = events[sent["messages"][0]]
    assert message["level"] == "info"
    assert message["message"] == "Checkout started for order 8812 on plan pro"
    assert message["release"] == RELEASE and message["environment"] == ENVIRONMENT
    message_signature = by_id[message["signature_id"]]
    # The order number is parameterised, so every order's message is one signature.
    assert "8812" not in message_signature["title"]
    assert message_signature["title"] == "Checkout started for order <n> on plan pro", message_signature
    assert message_signature["events"] == 1

    # Application mode: 2 sessions, 1 errored; request mode aggregate: 3 sessions, 1 errored.
    expected = {"started": 5, "errored": 2, "crashed": 0}
    assert session_table.wait_for_totals(expected, release=RELEASE, environment=ENVIRONMENT) == expected


def test_the_same_exception_from_moved_lines_is_one_signature(
    dsn: str, read_api: ReadApi, session_table: SessionTable, tmp_path: Path
) -> None:
    before = run_scenario(tmp_path / "before", dsn, plan="team")
    # The next version of billing.py has a docstring and imports on top: the raising line moves down.
    prefix = '"""Prices of the plans."""\n\nimport decimal  # noqa: F401\nimport logging  # noqa: F401\n\n'
    after = run_scenario(tmp_path / "after", dsn, plan="enterprise", billing_prefix=prefix)
    ids = before["exceptions"] + after["exceptions"]
    events = read_api.wait_for_events(ids)
    lines = sorted({innermost_frame(events[i])["lineno"] for i in ids})
    assert lines == [raising_line(BILLING_MODULE), raising_line(prefix + BILLING_MODULE)]
    assert {events[i]["exception"]["value"] for i in ids} == {"'team'", "'enterprise'"}
    assert len({events[i]["signature_id"] for i in ids}) == 1

    signatures = read_api.wait_for_signatures(lambda sigs: sum(s["events"] for s in sigs) == 6)
    (key_error,) = [s for s in signatures if s["type"] == "KeyError"]
    assert key_error["events"] == 4
    expected = {"started": 10, "errored": 4, "crashed": 0}
    assert session_table.wait_for_totals(expected, release=RELEASE, environment=ENVIRONMENT) == expected
