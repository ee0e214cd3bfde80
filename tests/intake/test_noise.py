from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from detector.intake.noise import NOISE_CLASSES, noise_class
from detector.intake.normalize import NormalizedEvent, normalize_event

RECEIVED = datetime(2026, 11, 27, 15, 5, 31, tzinfo=UTC)
APP_FRAME = {"filename": "https://app.example.com/static/app.3f9a1c.js", "function": "render", "in_app": True}


def browser_event(
    type_: str | None = "Error",
    value: str = "boom",
    frames: list[dict[str, Any]] | None = None,
    url: str = "https://app.example.com/billing/7",
    user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36",
) -> NormalizedEvent:
    exception: dict[str, Any] = {"type": type_, "value": value}
    exception["stacktrace"] = {"frames": [APP_FRAME] if frames is None else frames}
    payload = {
        "platform": "javascript",
        "exception": {"values": [exception]},
        "request": {"url": url, "headers": {"User-Agent": user_agent}},
    }
    return normalize_event(payload, received_at=RECEIVED)


def test_real_app_errors_are_not_noise(real_event_payloads: dict[str, dict[str, Any]]) -> None:
    for name, payload in real_event_payloads.items():
        assert noise_class(normalize_event(payload, received_at=RECEIVED)) is None, name


def test_plain_app_error_is_not_noise() -> None:
    assert noise_class(browser_event("TypeError", "e.map is not a function")) is None


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        ("Error", "ResizeObserver loop limit exceeded", "resize_observer"),
        ("Error", "ResizeObserver loop completed with undelivered notifications.", "resize_observer"),
        ("Error", "Script error.", "script_error"),
        (None, "Script error", "script_error"),
        ("ChunkLoadError", "Loading chunk 532 failed.\n(error: https://x/532.js)", "chunk_load"),
        ("Error", "Loading CSS chunk vendors-main failed.", "chunk_load"),
        (
            "TypeError",
            "Failed to fetch dynamically imported module: https://x/assets/a-BKx3e8Lq.js",
            "chunk_load",
        ),
        ("TypeError", "error loading dynamically imported module", "chunk_load"),
        ("TypeError", "Importing a module script failed.", "chunk_load"),
        ("TypeError", "Failed to fetch", "network"),
        ("TypeError", "NetworkError when attempting to fetch resource.", "network"),
        ("TypeError", "Load failed", "network"),
        ("Error", "Network Error", "network"),
        ("AxiosError", "timeout of 5000ms exceeded", "network"),
        ("Error", "XHR failed with status 0", "network"),
        ("Error", "Request failed with status code 0", "network"),
        ("Error", "Failed to fetch /api/billing/plan 503", None),
        ("Error", "Request failed with status code 500", None),
    ],
)
def test_message_classes(type_: str | None, value: str, expected: str | None) -> None:
    assert noise_class(browser_event(type_, value)) == expected


@pytest.mark.parametrize(
    "url",
    [
        "chrome-extension://abcdefghijklmnop/content.js",
        "moz-extension://1b2c3d4e/inject.js",
        "safari-extension://com.example.ext-ABC123/script.js",
        "safari-web-extension://ABCD-1234/content.js",
    ],
)
def test_extension_frames(url: str) -> None:
    frames = [{"filename": url, "function": "inject"}, APP_FRAME]
    assert noise_class(browser_event("TypeError", "x is undefined", frames)) == "extension"


def test_third_party_scripts() -> None:
    frames = [
        {"filename": "https://www.googletagmanager.com/gtm.js?id=GTM-1", "function": "a"},
        {"filename": "https://connect.facebook.net/en_US/fbevents.js", "function": "b"},
    ]
    assert noise_class(browser_event("TypeError", "x", frames)) == "third_party"


def test_own_cdn_on_the_same_site_is_first_party() -> None:
    frames = [{"filename": "https://cdn.example.com/app.js", "function": "render"}]
    assert noise_class(browser_event("TypeError", "x", frames)) is None


def test_configured_first_party_hosts() -> None:
    frames = [{"filename": "https://d111abc.cloudfront.net/app.js", "function": "render"}]
    event = browser_event("TypeError", "x", frames)
    assert noise_class(event) == "third_party"
    assert noise_class(event, first_party_hosts=["d111abc.cloudfront.net"]) is None


def test_country_code_domains() -> None:
    page = "https://shop.example.co.uk/cart"
    own = [{"filename": "https://static.example.co.uk/app.js", "function": "render"}]
    other = [{"filename": "https://tracker.other.co.uk/t.js", "function": "t"}]
    assert noise_class(browser_event("TypeError", "x", own, url=page)) is None
    assert noise_class(browser_event("TypeError", "x", other, url=page)) == "third_party"


def test_unknown_page_or_no_frames_is_not_third_party() -> None:
    frames = [{"filename": "https://other.com/x.js", "function": "t"}]
    assert noise_class(browser_event("TypeError", "x", frames, url="")) is None
    assert noise_class(browser_event("TypeError", "x", [])) is None


def test_source_mapped_frames_are_first_party() -> None:
    frames = [
        {"filename": "https://other.com/x.js", "function": "t"},
        {"filename": "src/features/PaidFeatures.js", "function": "renderPaidFeatures"},
    ]
    assert noise_class(browser_event("TypeError", "x", frames)) is None


def test_bots() -> None:
    event = browser_event("TypeError", "e.map is not a function", user_agent="Mozilla/5.0 (compatible; Googlebot/2.1)")
    assert noise_class(event) == "bot"


def test_message_class_wins_over_bot() -> None:
    event = browser_event("Error", "Script error.", user_agent="Googlebot/2.1")
    assert noise_class(event) == "script_error"


def test_noise_classes_are_listed() -> None:
    assert set(NOISE_CLASSES) == {
        "resize_observer",
        "script_error",
        "chunk_load",
        "network",
        "extension",
        "third_party",
        "bot",
    }
