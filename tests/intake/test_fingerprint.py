from __future__ import annotations

import copy
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from intake_helpers import capture_python_event

from detector.intake.fingerprint import (
    file_key,
    function_key,
    is_app_frame,
    normalize_message,
    signature_for_event,
    strip_content_hash,
)
from detector.intake.normalize import Frame, NormalizedEvent, normalize_event

RECEIVED = datetime(2026, 11, 27, 15, 5, 31, tzinfo=UTC)


def rebuilt(payload: dict[str, Any]) -> dict[str, Any]:
    """The same error from a rebuilt bundle: hashed file name, re-minified names, shifted columns."""
    again = copy.deepcopy(payload)
    for frame in again["exception"]["values"][-1]["stacktrace"]["frames"]:
        frame["filename"] = frame["filename"].replace("app.js", "app.9f3b2c1d.js")
        if frame["function"] == "Pl":
            frame["function"] = "Kq"
        frame["colno"] += 117
    return again


def event(payload: dict[str, Any]) -> NormalizedEvent:
    return normalize_event(payload, received_at=RECEIVED)


def js_error(type_: str, value: str, frames: list[dict[str, Any]], **extra: Any) -> NormalizedEvent:
    return event(
        {
            "platform": "javascript",
            "exception": {"values": [{"type": type_, "value": value, "stacktrace": {"frames": frames}}]},
            **extra,
        }
    )


def test_rebuilt_bundle_gives_the_same_hash(real_event_payloads: dict[str, dict[str, Any]]) -> None:
    original = real_event_payloads["browser-03"]
    again = rebuilt(original)
    assert again["exception"]["values"][0]["stacktrace"]["frames"][-1]["filename"].endswith("app.9f3b2c1d.js")
    first, second = signature_for_event(event(original)), signature_for_event(event(again))
    assert first.hash == second.hash
    assert re.fullmatch(r"[0-9a-f]{40}", first.hash)


def test_real_browser_signature(real_event_payloads: dict[str, dict[str, Any]]) -> None:
    signature = signature_for_event(event(real_event_payloads["browser-03"]))
    assert signature.type == "TypeError"
    assert signature.value == "<x>.map is not a function"
    assert signature.title == "TypeError: <x>.map is not a function"
    assert signature.culprit == "app.js"
    assert signature.frames_key == ("app.js:window.run", "app.js")


def test_three_real_errors_get_three_hashes(real_event_payloads: dict[str, dict[str, Any]]) -> None:
    hashes = {name: signature_for_event(event(p)).hash for name, p in real_event_payloads.items()}
    assert len(set(hashes.values())) == 3


def test_source_mapped_frames_are_used(real_event_payloads: dict[str, dict[str, Any]]) -> None:
    """After symbolication the frame names the original file and function (as the source map resolves)."""
    minified = event(real_event_payloads["browser-03"])
    original = Frame(
        filename="src/features/PaidFeatures.js",
        abs_path="webpack://web/./src/features/PaidFeatures.js",
        function="renderPaidFeatures",
        lineno=4,
        colno=23,
        in_app=True,
        context_line='  return entitlements.map((e) => `<li>${e.feature}</li>`).join("");',
    )
    symbolicated = replace(minified, frames=[*minified.frames[:-1], original])
    signature = signature_for_event(symbolicated)
    assert signature.culprit == "renderPaidFeatures"
    assert signature.frames_key[-1] == "src/features/PaidFeatures.js:renderPaidFeatures"
    assert signature.title == "TypeError: <x>.map is not a function"
    moved = replace(symbolicated, frames=[*minified.frames[:-1], replace(original, lineno=9, colno=3)])
    assert signature_for_event(moved).hash == signature.hash


def test_two_errors_in_one_minified_file_differ() -> None:
    frames = [{"filename": "https://cdn.example.com/app.3f9a1c.js", "function": "t", "lineno": 1, "colno": 500}]
    first = js_error("TypeError", "e.map is not a function", frames)
    second = js_error("TypeError", "Cannot read properties of undefined (reading 'id')", frames)
    assert signature_for_event(first).hash != signature_for_event(second).hash


def test_two_functions_in_one_python_file_differ() -> None:
    source = "def a(x):\n    return x['plan']\n\ndef b(x):\n    return x['plan']\n"
    in_a = capture_python_event(source, "billing/plans.py", "a", {})
    in_b = capture_python_event(source, "billing/plans.py", "b", {})
    assert signature_for_event(event(in_a)).hash != signature_for_event(event(in_b)).hash


def test_same_python_error_on_other_lines_groups_together() -> None:
    before = "def load_plan(account):\n    return account['plan']['name']\n"
    after = "import os\n\n\n# a comment moves everything down\n" + before
    first = capture_python_event(before, "billing/plans.py", "load_plan", {})
    second = capture_python_event(after, "billing/plans.py", "load_plan", {})
    lines = [p["exception"]["values"][-1]["stacktrace"]["frames"][-1]["lineno"] for p in (first, second)]
    assert lines[0] != lines[1]
    a, b = signature_for_event(event(first)), signature_for_event(event(second))
    assert a.hash == b.hash
    assert a.culprit == "load_plan"
    assert a.frames_key[-1] == "billing.plans:load_plan"
    assert a.title == "KeyError: <str>"


def test_different_exception_types_in_one_function_differ() -> None:
    source = "def f(x):\n    if x:\n        raise ValueError('bad')\n    return {}['k']\n"
    value_error = capture_python_event(source, "app/x.py", "f", 1)
    key_error = capture_python_event(source, "app/x.py", "f", 0)
    assert signature_for_event(event(value_error)).hash != signature_for_event(event(key_error)).hash


def test_no_frames_falls_back_to_type_and_message() -> None:
    a = event({"message": "Payment 4411 failed for user 17"})
    b = event({"message": "Payment 9000 failed for user 3"})
    c = event({"message": "Payment refused"})
    assert signature_for_event(a).hash == signature_for_event(b).hash
    assert signature_for_event(a).hash != signature_for_event(c).hash
    assert signature_for_event(a).title == "Payment <n> failed for user <n>"
    assert signature_for_event(a).frames_key == ()


def test_native_anonymous_and_library_frames_are_ignored() -> None:
    app = {"filename": "https://x.com/static/app.js", "function": "renderList", "in_app": True}
    noisy = [
        {"filename": "[native code]", "function": "Array.map"},
        {"filename": "<anonymous>", "function": "?"},
        {"filename": "https://x.com/node_modules/react-dom/index.js", "function": "commitRoot"},
        {"filename": "https://x.com/static/polyfills.js", "function": "Promise"},
        {"filename": "https://x.com/static/vendor.js", "function": "lodashMap", "in_app": False},
    ]
    plain = js_error("TypeError", "x", [app])
    with_noise = js_error("TypeError", "x", [*noisy[:2], app, *noisy[2:]])
    assert signature_for_event(plain).hash == signature_for_event(with_noise).hash
    assert signature_for_event(with_noise).frames_key == ("app.js:renderList",)


def test_fingerprint_extends_or_replaces_the_default() -> None:
    frames = [{"filename": "https://x.com/app.js", "function": "pay"}]
    default = js_error("Error", "declined", frames)
    extended = js_error("Error", "declined", frames, fingerprint=["{{ default }}", "stripe"])
    extended_again = js_error("Error", "other words", frames, fingerprint=["{{default}}", "stripe"])
    custom = js_error("Error", "declined", frames, fingerprint=["payment-declined"])
    custom_elsewhere = js_error("TypeError", "boom", [], message="x", fingerprint=["payment-declined"])
    hashes = {s: signature_for_event(e).hash for s, e in [("d", default), ("x", extended), ("c", custom)]}
    assert len(set(hashes.values())) == 3
    assert signature_for_event(extended_again).hash == hashes["x"]
    assert signature_for_event(custom_elsewhere).hash == hashes["c"]


def test_line_and_column_are_never_part_of_the_key() -> None:
    frame = {"filename": "https://x.com/app.js", "function": "pay", "lineno": 10, "colno": 5}
    moved = dict(frame, lineno=99, colno=1234)
    assert (
        signature_for_event(js_error("Error", "e", [frame])).hash
        == signature_for_event(js_error("Error", "e", [moved])).hash
    )


def test_title_is_capped() -> None:
    signature = signature_for_event(event({"exception": {"values": [{"type": "Error", "value": "word " * 200}]}}))
    assert len(signature.title) <= 200
    assert signature.title.startswith("Error: word word")
    assert signature.title.endswith("…")


@pytest.mark.parametrize(
    "message",
    [
        "e.map is not a function",
        "t.map is not a function",
        "(intermediate value).map is not a function",
        "n.items.map is not a function",
        "e.map is not a function. (In 'e.map(x=>x)', 'e.map' is undefined)",
    ],
)
def test_minified_receivers_fold(message: str) -> None:
    assert normalize_message(message) == "<x>.map is not a function"


@pytest.mark.parametrize(
    "message",
    [
        "Cannot read properties of undefined (reading 'foo')",
        "Cannot read properties of null (reading 'foo')",
        "Cannot read property 'foo' of undefined",
        "undefined is not an object (evaluating 'e.foo')",
        "null is not an object (evaluating 'a.b.foo')",
        'can\'t access property "foo", t is undefined',
    ],
)
def test_reading_a_property_of_nothing_keeps_the_property(message: str) -> None:
    assert normalize_message(message) == "Cannot read properties of <x> (reading 'foo')"


@pytest.mark.parametrize(
    ("message", "normalised"),
    [
        ("Failed to fetch /api/billing/plan 503", "Failed to fetch /api/billing/plan <n>"),
        (
            "User 8f14e45f-ceea-467f-a0b6-3f1b2c3d4e5f not found at https://x.com/a?b=1 (bob@x.com)",
            "User <uuid> not found at <url> (<email>)",
        ),
        ("Invalid plan 'gold' for \"acme\"", "Invalid plan <str> for <str>"),
        ("object at 0x7ffde4a1 with hash 3f9a1c2b7d", "object at <hex> with hash <hex>"),
        ("timeout of 5000ms exceeded", "timeout of <n>ms exceeded"),
        ("t is not a function", "<x> is not a function"),
        ("renderFoo is not a function", "renderFoo is not a function"),
        (
            "Cannot destructure property 'a' of 'e' as it is undefined.",
            "Cannot destructure property 'a' of <x> as it is undefined.",
        ),
        ("don't   split\n lines", "don't split lines"),
        ("Float32Array length 3.5", "Float32Array length <n>"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_message(message: str | None, normalised: str) -> None:
    assert normalize_message(message) == normalised


@pytest.mark.parametrize(
    ("name", "stripped"),
    [
        ("main.3f9a1c.js", "main.js"),
        ("app.9f3b2c1d.js", "app.js"),
        ("chunk-AB12CD.js", "chunk.js"),
        ("index-BKx3e8Lq.js", "index.js"),
        ("index-BKxqeRLq.js", "index.js"),
        ("main.3f9a1c.chunk.js", "main.chunk.js"),
        ("app.js", "app.js"),
        ("chunk-vendors.js", "chunk-vendors.js"),
        ("polyfill-es5.js", "polyfill-es5.js"),
        ("PaidFeatures.js", "PaidFeatures.js"),
        ("my-Component.js", "my-Component.js"),
    ],
)
def test_strip_content_hash(name: str, stripped: str) -> None:
    assert strip_content_hash(name) == stripped


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (Frame(filename="https://cdn.x.com/static/js/main.3f9a1c.js?v=2#x"), "main.js"),
        (Frame(filename="http://127.0.0.1:9913/app.js"), "app.js"),
        (Frame(filename="webpack://my-app/./src/api/entitlements.js"), "src/api/entitlements.js"),
        (Frame(filename="webpack:///src/api/entitlements.js"), "src/api/entitlements.js"),
        (Frame(filename="./src/features/PaidFeatures.js"), "src/features/PaidFeatures.js"),
        (Frame(filename="app:///dist/server-AB12CD.js"), "dist/server.js"),
        (Frame(filename="/srv/app/dist/server.js"), "server.js"),
        (Frame(filename="billing/plans.py", module="billing.plans"), "billing.plans"),
        (Frame(filename="<anonymous>"), None),
        (Frame(filename="[native code]"), None),
        (Frame(), None),
    ],
)
def test_file_key(frame: Frame, key: str | None) -> None:
    assert file_key(frame) == key


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("renderPaidFeatures", "renderPaidFeatures"),
        ("async window.run", "window.run"),
        ("Pl", None),
        ("t", None),
        ("Pl.render", "render"),
        ("?", None),
        ("<anonymous>", None),
        ("Object.<anonymous>", None),
        ("HTMLButtonElement.<anonymous>", None),
        ("Foo.bar [as baz]", "Foo.bar"),
        (None, None),
    ],
)
def test_function_key_for_javascript(name: str | None, key: str | None) -> None:
    assert function_key(name, minified_names=True) == key


def test_short_python_names_are_kept() -> None:
    assert function_key("f", minified_names=False) == "f"


def test_is_app_frame() -> None:
    assert is_app_frame(Frame(filename="https://x.com/app.js"))
    assert not is_app_frame(Frame(filename="https://x.com/app.js", in_app=False))
    assert not is_app_frame(Frame(filename="chrome-extension://abc/content.js", in_app=True))
    assert not is_app_frame(Frame(abs_path="/usr/lib/python3.11/site-packages/django/core.py"))
