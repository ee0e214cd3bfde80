from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from intake_helpers import capture_python_event

from detector.intake.normalize import (
    Frame,
    InvalidEvent,
    NormalizedEvent,
    event_from_dict,
    event_to_dict,
    normalize_event,
    parse_user_agent,
    route_from_url,
)

RECEIVED = datetime(2026, 11, 27, 15, 5, 31, tzinfo=UTC)
HEADLESS_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"
)


def minimal(**extra: Any) -> dict[str, Any]:
    return {"event_id": "cf6f6b56de78421ba53414ce703d646b", "message": "boom", **extra}


def test_real_browser_event(real_event_payloads: dict[str, dict[str, Any]]) -> None:
    event = normalize_event(real_event_payloads["browser-03"], received_at=RECEIVED)
    assert event.event_id == "cf6f6b56de78421ba53414ce703d646b"
    assert event.timestamp == datetime.fromtimestamp(1795791930.646, UTC)
    assert event.timestamp.tzinfo is UTC
    assert (event.level, event.platform, event.release, event.environment) == (
        "error",
        "javascript",
        "web@1.2.0",
        "production",
    )
    assert event.exception_type == "TypeError"
    assert event.exception_value == "(intermediate value).map is not a function"
    assert event.message is None
    assert event.handled is True
    assert [f.function for f in event.frames] == ["?", "async window.run", "Pl"]
    innermost = event.frames[-1]
    assert innermost == Frame(
        filename="http://127.0.0.1:9913/app.js", function="Pl", lineno=15, colno=33436, in_app=True
    )
    assert event.session_key == "56a0557573a4429090b430cba1d4c2f8"
    assert event.user_key is None
    assert event.url == "http://127.0.0.1:9913/index.html"
    assert event.route == "/index.html"
    assert (event.browser, event.os, event.is_bot) == ("Chrome 156", "Linux", False)
    assert event.sdk_name == "sentry.javascript.browser"
    assert event.fingerprint is None
    assert event.tags == {}
    assert event.debug_ids == []


def test_all_real_browser_events_normalise(real_event_payloads: dict[str, dict[str, Any]]) -> None:
    events = {name: normalize_event(p, received_at=RECEIVED) for name, p in real_event_payloads.items()}
    assert sorted(events) == ["browser-03", "browser-05", "browser-06"]
    assert events["browser-05"].handled is False
    assert events["browser-06"].exception_type == "Error"
    assert events["browser-06"].exception_value == "Failed to fetch /api/billing/plan 503"


def test_real_python_sdk_event() -> None:
    payload = capture_python_event(
        "def load_plan(account):\n    return account['plan']\n", "billing/plans.py", "load_plan", {}
    )
    event = normalize_event(payload, received_at=datetime.now(UTC))
    assert event.platform == "python"
    assert event.sdk_name == "sentry.python"
    assert (event.exception_type, event.exception_value) == ("KeyError", "'plan'")
    assert event.frames[-1].function == "load_plan"
    assert event.frames[-1].module == "billing.plans"
    assert event.frames[-1].in_app is True
    assert event.release == "api@1.0.0"
    assert event.session_key is None
    assert event.timestamp == datetime.fromisoformat(payload["timestamp"])


def test_chained_exceptions_use_the_last_value() -> None:
    payload = minimal(
        exception={
            "values": [
                {"type": "KeyError", "value": "'id'", "stacktrace": {"frames": [{"function": "inner"}]}},
                {
                    "type": "ValueError",
                    "value": "bad account",
                    "stacktrace": {"frames": [{"function": "outer"}]},
                },
            ]
        }
    )
    event = normalize_event(payload, received_at=RECEIVED)
    assert (event.exception_type, event.exception_value) == ("ValueError", "bad account")
    assert [f.function for f in event.frames] == ["outer"]


def test_legacy_exception_shapes() -> None:
    as_list = normalize_event(minimal(exception=[{"type": "E", "value": "v"}]), received_at=RECEIVED)
    as_object = normalize_event(minimal(exception={"type": "E", "value": "v"}), received_at=RECEIVED)
    assert (as_list.exception_type, as_object.exception_type) == ("E", "E")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"message": "plain"}, "plain"),
        ({"message": None, "logentry": {"formatted": "Hello 42", "message": "Hello %s"}}, "Hello 42"),
        ({"message": None, "logentry": {"message": "Hello %s", "params": [42]}}, "Hello %s"),
        ({"message": {"formatted": "as object"}}, "as object"),
    ],
)
def test_message_sources(fields: dict[str, Any], message: str) -> None:
    assert normalize_event(minimal(**fields), received_at=RECEIVED).message == message


def test_message_event_takes_frames_from_threads() -> None:
    payload = minimal(
        threads={
            "values": [
                {"id": 1, "stacktrace": {"frames": [{"function": "idle"}]}},
                {"id": 2, "current": True, "stacktrace": {"frames": [{"function": "main"}]}},
            ]
        }
    )
    assert [f.function for f in normalize_event(payload, received_at=RECEIVED).frames] == ["main"]


def test_event_id_forms() -> None:
    dashed = normalize_event(minimal(event_id="CF6F6B56-DE78-421B-A534-14CE703D646B"), received_at=RECEIVED)
    assert dashed.event_id == "cf6f6b56de78421ba53414ce703d646b"
    generated = normalize_event(minimal(event_id=None), received_at=RECEIVED)
    assert len(generated.event_id) == 32
    assert int(generated.event_id, 16) >= 0


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([1, 2], "event must be a JSON object, got list"),
        ("x", "event must be a JSON object, got str"),
        ({"event_id": "cf6f6b56de78421ba53414ce703d646b"}, "neither an exception nor a message"),
        (minimal(message="", exception={"values": []}), "neither an exception nor a message"),
        (minimal(event_id="not-an-id"), "event_id must be 32 hex digits"),
        (minimal(event_id=12), "event_id must be a string"),
        (minimal(timestamp=math.inf), "timestamp is not finite"),
        (minimal(timestamp=math.nan), "timestamp is not finite"),
        (minimal(timestamp=-5), "timestamp is negative"),
        (minimal(timestamp=5), "before 2000-01-01"),
        (minimal(timestamp="1999-12-31T23:59:59Z"), "before 2000-01-01"),
        (minimal(timestamp=1e15), "past year 9999"),
        (minimal(timestamp="yesterday"), "timestamp is not a date"),
        (minimal(timestamp=True), "timestamp must be a number or an ISO 8601 string"),
        (minimal(timestamp=[1]), "timestamp must be a number or an ISO 8601 string"),
    ],
)
def test_invalid_events(payload: Any, fragment: str) -> None:
    with pytest.raises(InvalidEvent, match=fragment):
        normalize_event(payload, received_at=RECEIVED)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795791930.5, datetime.fromtimestamp(1795791930.5, UTC)),
        (1795791930, datetime.fromtimestamp(1795791930, UTC)),
        ("2026-11-27T15:05:30.543Z", datetime(2026, 11, 27, 15, 5, 30, 543000, tzinfo=UTC)),
        ("2026-11-27T16:05:30+01:00", datetime(2026, 11, 27, 15, 5, 30, tzinfo=UTC)),
        ("2026-11-27T15:05:30", datetime(2026, 11, 27, 15, 5, 30, tzinfo=UTC)),
        ("1795791930.5", datetime.fromtimestamp(1795791930.5, UTC)),
        (None, RECEIVED),
    ],
)
def test_timestamp_forms(value: Any, expected: datetime) -> None:
    event = normalize_event(minimal(timestamp=value), received_at=RECEIVED)
    assert event.timestamp == expected
    assert event.timestamp.utcoffset() == timedelta(0)


def test_past_timestamps_are_honoured_and_future_ones_clamped() -> None:
    last_year = RECEIVED - timedelta(days=365)
    assert normalize_event(minimal(timestamp=last_year.timestamp()), received_at=RECEIVED).timestamp == last_year
    near = RECEIVED + timedelta(seconds=50)
    assert normalize_event(minimal(timestamp=near.timestamp()), received_at=RECEIVED).timestamp == near
    far = RECEIVED + timedelta(hours=2)
    assert normalize_event(minimal(timestamp=far.timestamp()), received_at=RECEIVED).timestamp == RECEIVED
    lenient = normalize_event(minimal(timestamp=far.timestamp()), received_at=RECEIVED, max_future=timedelta(hours=3))
    assert lenient.timestamp == far


def test_naive_received_at_is_utc() -> None:
    event = normalize_event(minimal(), received_at=RECEIVED.replace(tzinfo=None))
    assert event.timestamp == RECEIVED


def test_defaults() -> None:
    event = normalize_event(minimal(), received_at=RECEIVED)
    assert (event.level, event.platform, event.release, event.environment) == (
        "error",
        "other",
        "",
        "production",
    )
    assert (event.browser, event.os, event.url, event.route, event.is_bot) == (None, None, None, None, False)


@pytest.mark.parametrize(("raw", "level"), [("WARN", "warning"), ("critical", "fatal"), ("nonsense", "error")])
def test_levels(raw: str, level: str) -> None:
    assert normalize_event(minimal(level=raw), received_at=RECEIVED).level == level


@pytest.mark.parametrize(
    ("user", "key"),
    [
        ({"id": 17, "email": "a@b.c", "ip_address": "1.2.3.4"}, "17"),
        ({"email": "a@b.c", "ip_address": "1.2.3.4"}, "a@b.c"),
        ({"ip_address": "1.2.3.4"}, "1.2.3.4"),
        ({"ip_address": "{{auto}}"}, None),
        ({}, None),
    ],
)
def test_user_key(user: dict[str, Any], key: str | None) -> None:
    assert normalize_event(minimal(user=user), received_at=RECEIVED).user_key == key


def test_session_key_only_for_browser_events() -> None:
    trace = {"trace": {"trace_id": "56a0557573a4429090b430cba1d4c2f8"}}
    browser = minimal(platform="javascript", sdk={"name": "sentry.javascript.react"}, contexts=trace)
    node = minimal(platform="javascript", sdk={"name": "sentry.javascript.node"}, contexts=trace)
    python = minimal(platform="python", sdk={"name": "sentry.python"}, contexts=trace)
    assert normalize_event(browser, received_at=RECEIVED).session_key == "56a0557573a4429090b430cba1d4c2f8"
    assert normalize_event(node, received_at=RECEIVED).session_key is None
    assert normalize_event(python, received_at=RECEIVED).session_key is None


@pytest.mark.parametrize(
    ("url", "route"),
    [
        ("https://app.example.com/billing/123", "/billing/:id"),
        (
            "https://app.example.com/billing/123/invoices/9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f?tab=2",
            "/billing/:id/invoices/:id",
        ),
        ("https://x/users/u-17/orders/5f2b3c4d5e6f7a8b9c0d1e2f", "/users/:id/orders/:id"),
        ("https://x/u/alice@example.com", "/u/:id"),
        ("https://x/", "/"),
        ("https://x", "/"),
        ("https://x/app#/projects/42/settings", "/app#/projects/:id/settings"),
        ("https://x/page#section-3", "/page"),
        ("https://x/v2/api/items", "/v2/api/items"),
    ],
)
def test_route_from_url(url: str, route: str) -> None:
    assert route_from_url(url) == route


@pytest.mark.parametrize(
    ("ua", "browser", "os", "is_bot"),
    [
        (HEADLESS_UA, "Chrome 156", "Linux", False),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36",
            "Chrome 120",
            "Windows 10",
            False,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            "Edge 120",
            "Windows 10",
            False,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Firefox 121",
            "Mac OS X",
            False,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.2 Safari/605.1.15",
            "Safari 17",
            "Mac OS X",
            False,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.2 Mobile/15E148 Safari/604.1",
            "Safari 17",
            "iOS",
            False,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.6099.144 Mobile Safari/537.36",
            "Chrome 120",
            "Android",
            False,
        ),
        (
            "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
            "IE 11",
            "Windows 7",
            False,
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            None,
            None,
            True,
        ),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
            "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
            "Chrome 116",
            None,
            True,
        ),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", None, None, True),
        ("python-requests/2.31.0", None, None, True),
        (None, None, None, False),
    ],
)
def test_parse_user_agent(ua: str | None, browser: str | None, os: str | None, is_bot: bool) -> None:
    assert parse_user_agent(ua) == (browser, os, is_bot)


def test_contexts_win_over_user_agent() -> None:
    payload = minimal(
        request={"headers": [["user-agent", HEADLESS_UA]]},
        contexts={
            "browser": {"name": "Firefox", "version": "121.0"},
            "os": {"name": "Windows", "version": "10"},
        },
    )
    event = normalize_event(payload, received_at=RECEIVED)
    assert (event.browser, event.os) == ("Firefox 121", "Windows 10")
    mac = normalize_event(minimal(contexts={"os": {"name": "macOS", "version": "14.2"}}), received_at=RECEIVED)
    assert mac.os == "Mac OS X"


def test_bot_user_agent_from_header_list() -> None:
    payload = minimal(request={"url": "https://x/", "headers": [["User-Agent", "Googlebot/2.1"]]})
    assert normalize_event(payload, received_at=RECEIVED).is_bot is True


def test_tags_fingerprint_debug_ids() -> None:
    payload = minimal(
        tags=[["feature", "billing"], ["count", 3], ["flag", True], ["bad"], ["none", None]],
        fingerprint=["{{ default }}", "billing"],
        debug_meta={
            "images": [
                {
                    "type": "sourcemap",
                    "debug_id": "C941D872-B1D1-4C43-9C56-1A1E12345678",
                    "code_file": "~/app.js",
                },
                {"type": "sourcemap", "code_file": "~/no-id.js"},
            ]
        },
    )
    event = normalize_event(payload, received_at=RECEIVED)
    assert event.tags == {"feature": "billing", "count": "3", "flag": "true"}
    assert event.fingerprint == ["{{ default }}", "billing"]
    assert event.debug_ids == [{"debug_id": "c941d872-b1d1-4c43-9c56-1a1e12345678", "code_file": "~/app.js"}]
    as_dict = normalize_event(minimal(tags={"a": "1", "b": 2}), received_at=RECEIVED)
    assert as_dict.tags == {"a": "1", "b": "2"}


def test_json_round_trip(real_event_payloads: dict[str, dict[str, Any]]) -> None:
    payload = dict(real_event_payloads["browser-03"], tags={"a": "b"}, fingerprint=["x"], user={"id": "u1"})
    event = normalize_event(payload, received_at=RECEIVED)
    text = json.dumps(event_to_dict(event))
    restored = event_from_dict(json.loads(text))
    assert restored == event
    assert isinstance(restored, NormalizedEvent)
    assert isinstance(restored.frames[0], Frame)


def test_from_dict_ignores_unknown_keys_and_defaults_missing_ones() -> None:
    data = {"event_id": "a" * 32, "timestamp": "2026-11-27T15:05:31+00:00", "future_field": 1}
    event = event_from_dict(data)
    assert event.event_id == "a" * 32
    assert event.frames == []
    assert event.environment == "production"
