"""The digest's memos (frames by their JSON text, signatures and stored frame dicts by the frames' identity)
give exactly what the unmemoised code gives, including across a source-map upload within one release."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from detector.intake import fingerprint
from detector.intake.digest import digest_all, floor_minute
from detector.intake.fingerprint import signature_for_event
from detector.intake.normalize import (
    NormalizedEvent,
    event_from_dict,
    event_to_dict,
    normalize_event,
    normalize_event_json,
)
from detector.sourcemaps.bundle import parse_bundle
from detector.sourcemaps.symbolicator import ArtifactSymbolicator
from detector.store import artifacts
from detector.store.db import transaction
from detector.store.models import Event, Project
from detector.store.models import Signature as SignatureRow
from detector.store.queue import enqueue_items
from tests.sourcemaps.conftest import BundleBuilder, sha1

RECEIVED = datetime(2026, 11, 27, 15, 5, 31, tzinfo=UTC)


def browser_event(**extra: Any) -> dict[str, Any]:
    frames = [
        {"filename": "<anonymous>", "function": "?", "in_app": True, "lineno": 381, "colno": 23},
        {
            "filename": "http://app.example.com/assets/vendor.3a9f3.js",
            "function": "dispatch",
            "in_app": False,
            "lineno": 2,
            "colno": 1200,
        },
        {
            "filename": "http://app.example.com/src/module3.js",
            "function": "loadInvoices3",
            "in_app": True,
            "lineno": 41,
            "colno": 33436,
            "pre_context": ["a", 1, "b"],
            "context_line": "x()",
            "vars": {"a": [1, 2.5, None]},
        },
    ]
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": 1795791930.646,
        "platform": "javascript",
        "release": "web@1.2.0",
        "exception": {
            "values": [{"type": "TypeError", "value": "e.map is not a function", "stacktrace": {"frames": frames}}]
        },
        "request": {"url": "http://app.example.com/billing/17", "headers": {"User-Agent": "Mozilla/5.0 Firefox/120"}},
        **extra,
    }


def variants() -> list[dict[str, Any]]:
    """Payloads that differ in one input the memoised results depend on."""
    base = browser_event()
    out = [base]
    for change in (
        lambda p: p["exception"]["values"][0]["stacktrace"]["frames"][2].update(lineno=42),
        lambda p: p["exception"]["values"][0]["stacktrace"]["frames"][2].update(lineno=42.0),
        lambda p: p["exception"]["values"][0]["stacktrace"]["frames"][2].update(lineno="42"),
        lambda p: p["exception"]["values"][0]["stacktrace"]["frames"][2].update(in_app=False),
        lambda p: p["exception"]["values"][0]["stacktrace"]["frames"][2].update(function="Pl"),
        lambda p: p["exception"]["values"][0]["stacktrace"]["frames"][2].update(function="?"),
        lambda p: p["exception"]["values"][0]["stacktrace"]["frames"][2].update(pre_context="a"),
        lambda p: p["exception"]["values"][0]["stacktrace"]["frames"][2].update(lineno=1e29),  # orjson cannot encode
        lambda p: p["exception"]["values"][0]["stacktrace"]["frames"].append("not a frame"),
        lambda p: p["exception"]["values"][0]["stacktrace"]["frames"].clear(),
        lambda p: p["exception"]["values"][0].update(value="t.map is not a function"),
        lambda p: p["exception"]["values"][0].update(value="Cannot read properties of undefined (reading 'x')"),
        lambda p: p["exception"]["values"][0].update(type="RangeError"),
        lambda p: p.update(platform="python"),
        lambda p: p.update(fingerprint=["{{ default }}", "checkout"]),
        lambda p: p.update(fingerprint=["checkout"]),
        lambda p: p.update(fingerprint=["{{ type }}", "{{ message }}"]),
        lambda p: p.update(request={"url": "http://app.example.com/other/17"}),
        lambda p: p.update(request={"url": "http://app.example.com/x"}, release="web@1.3.0", user={"id": 5}),
    ):
        payload = copy.deepcopy(base)
        change(payload)
        out.append(payload)
    # no in-app frame with a name or a file: the culprit falls back to the (per-event) route
    nameless = copy.deepcopy(base)
    nameless["exception"]["values"][0]["stacktrace"]["frames"] = [
        base["exception"]["values"][0]["stacktrace"]["frames"][0]
    ]
    for url in ("http://app.example.com/a/1", "http://app.example.com/b/2", None):
        payload = copy.deepcopy(nameless)
        payload["request"] = {"url": url} if url else {}
        out.append(payload)
    message = {"event_id": uuid.uuid4().hex, "message": "boom 17", "platform": "python"}
    threads = {
        "values": [
            {"id": 1, "stacktrace": {"frames": [{"module": "app.jobs", "function": "other"}]}},
            {"id": 2, "crashed": True, "stacktrace": {"frames": [{"module": "app.jobs", "function": "run"}]}},
        ]
    }
    out += [
        message,
        {**message, "threads": threads},
        {**message, "stacktrace": {"frames": [{"module": "m", "function": "f"}]}},
    ]
    return out


def json_text(payload: dict[str, Any]) -> bytes:
    # json.dumps, not orjson: 1e29 must survive as the float the SDK sent
    return json.dumps(payload).encode()


def test_normalize_event_json_is_normalize_event_of_the_decoded_text(
    real_event_payloads: dict[str, dict[str, Any]],
) -> None:
    payloads = [*real_event_payloads.values(), *variants()]
    for _ in range(2):  # the second round is served from the memo
        for payload in payloads:
            raw = json_text(payload)
            expected = normalize_event(orjson.loads(raw), received_at=RECEIVED)
            assert normalize_event_json(raw, received_at=RECEIVED) == expected


def test_equal_stacks_share_frame_objects_but_not_the_list() -> None:
    one = browser_event()
    two = browser_event(user={"id": "someone else"})
    a = normalize_event_json(json_text(one), received_at=RECEIVED)
    b = normalize_event_json(json_text(two), received_at=RECEIVED)
    assert a.event_id != b.event_id and a.user_key != b.user_key
    assert a.frames == b.frames and a.frames is not b.frames
    assert all(x is y for x, y in zip(a.frames, b.frames, strict=True))
    b.frames.append(b.frames[0])  # a caller may change its own list without touching the other event's
    assert len(a.frames) == 3


def test_invalid_json_still_raises_value_error() -> None:
    with pytest.raises(ValueError):
        normalize_event_json(b"{not json", received_at=RECEIVED)


def fresh_signature(event: NormalizedEvent) -> fingerprint.Signature:
    # The event rebuilt from its dict: new Frame objects, so the memo cannot answer.
    return signature_for_event(event_from_dict(event_to_dict(event)))


def test_memoised_signatures_equal_fresh_ones(real_event_payloads: dict[str, dict[str, Any]]) -> None:
    payloads = [*real_event_payloads.values(), *variants()]
    for _ in range(2):
        for payload in payloads:
            event = normalize_event_json(json_text(payload), received_at=RECEIVED)
            assert signature_for_event(event) == fresh_signature(event)


def test_one_stack_with_different_routes_fingerprints_and_messages() -> None:
    """Frames shared (the same objects), everything else different: each gets its own signature."""
    event = normalize_event_json(json_text(variants()[-6]), received_at=RECEIVED)  # nameless, route /a/:id
    assert signature_for_event(event).culprit == "/a/:id"
    for changes in (
        {"route": "/b/:id"},
        {"route": None},
        {"fingerprint": ["{{ default }}", "x"]},
        {"fingerprint": ["x"]},
        {"exception_value": "something else"},
        {"exception_type": "RangeError"},
        {"exception_value": None, "message": "from the message"},
        {"platform": "python"},
    ):
        changed = NormalizedEvent(**{**{f: getattr(event, f) for f in event.__slots__}, **changes})
        assert changed.frames[0] is event.frames[0]
        assert signature_for_event(changed) == fresh_signature(changed), changes


def test_signature_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fingerprint, "SIGNATURE_MEMO_SIZE", 3)
    fingerprint._signature_memo.clear()
    for i in range(10):
        event = normalize_event_json(json_text(browser_event(message=str(i))), received_at=RECEIVED)
        signature_for_event(event)
    assert len(fingerprint._signature_memo) <= 3


def test_shared_frame_dicts_equal_fresh_ones(real_event_payloads: dict[str, dict[str, Any]]) -> None:
    for payload in [*real_event_payloads.values(), *variants()]:
        event = normalize_event_json(json_text(payload), received_at=RECEIVED)
        for _ in range(2):
            assert event_to_dict(event, shared_frames=True) == event_to_dict(event)


# --- the digest, with a source map uploaded between two events of one release ----------------------------


def store_bundle(factory: sessionmaker[Session], data: bytes) -> None:
    bundle = parse_bundle(data, max_uncompressed=64 * 1024 * 1024)
    with transaction(factory) as session:
        artifacts.store_bundle(
            session,
            org="default",
            checksum=sha1(data),
            release=bundle.release,
            dist=None,
            debug_id=bundle.debug_id,
            manifest=bundle.manifest,
            data=data,
            files=[artifacts.BundleFileRow(f.path, f.url, f.file_type, f.debug_id, f.sourcemap) for f in bundle.files],
        )


def digest_one(
    factory: sessionmaker[Session], project: Project, payload: dict[str, Any], symbolicator: ArtifactSymbolicator
) -> tuple[dict[str, Any], str]:
    """Digest `payload` as a fresh event; its stored JSON and its signature's hash."""
    event_id = uuid.uuid4().hex
    with transaction(factory) as session:
        row = {"project_id": project.id, "item_type": "event", "event_id": event_id, "received_at": datetime.now(UTC)}
        enqueue_items(session, [{**row, "payload": json_text({**payload, "event_id": event_id})}])
    assert digest_all(factory, symbolicate=symbolicator).events == 1
    with factory() as session:
        stored = session.execute(
            select(Event.data, SignatureRow.hash)
            .join(SignatureRow, SignatureRow.id == Event.signature_id)
            .where(Event.event_id == event_id)
        ).one()
    return dict(stored[0]), stored[1]


def test_a_map_uploaded_between_two_events_of_a_release(
    factory: sessionmaker[Session], project: Project, fixtures_dir: Path
) -> None:
    raw = (fixtures_dir / "real-clients" / "browser-03-event.envelope").read_bytes()
    payload = dict(json.loads(raw.split(b"\n")[2]))
    real = fixtures_dir / "real-clients"
    bundle = (
        BundleBuilder()
        .add("~/app.js", (real / "browser-app.min.js").read_bytes(), "minified_source", {"sourcemap": "app.js.map"})
        .add("~/app.js.map", (real / "browser-app.min.js.map").read_bytes(), "source_map")
    )
    now = [1000.0]
    symbolicator = ArtifactSymbolicator(clock=lambda: now[0], missing_ttl=2.0, found_ttl=60.0)

    before, before_hash = digest_one(factory, project, payload, symbolicator)
    assert before["frames"][-1]["filename"] != "src/features/PaidFeatures.js"

    store_bundle(factory, bundle.build())
    now[0] += 5.0
    after, after_hash = digest_one(factory, project, payload, symbolicator)
    assert after["frames"][-1]["filename"] == "src/features/PaidFeatures.js"

    # each stored event and signature is what the unmemoised code computes for that event
    for stored, stored_hash in ((before, before_hash), (after, after_hash)):
        event = event_from_dict(stored)
        assert fresh_signature(event).hash == stored_hash
        assert event_to_dict(event) == stored
    unresolved = normalize_event(payload, received_at=RECEIVED)
    assert fresh_signature(unresolved).hash == before_hash
    assert before_hash != after_hash


# --- the digest's cheaper time formatting ------------------------------------------------------------------


@pytest.mark.parametrize(
    "ts",
    [
        datetime(2026, 11, 27, 15, 5, 31, 646000, tzinfo=UTC),
        datetime(2026, 11, 27, 15, 5, 0, tzinfo=UTC),
        datetime(2026, 11, 27, 15, 5, 59, 999999, tzinfo=UTC),
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2026, 11, 27, 15, 5, 31, 646000, tzinfo=timezone(timedelta(0))),
        datetime(2026, 11, 27, 15, 5, 31, 646000, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2026, 11, 27, 15, 5, 31, 646000),
        datetime(2026, 11, 1, 1, 30, 5, fold=1),
    ],
)
def test_stored_timestamp_and_minute_as_isoformat_and_replace_give_them(ts: datetime) -> None:
    event = normalize_event({"message": "boom"}, received_at=datetime.now(UTC))
    event = NormalizedEvent(**{**{f: getattr(event, f) for f in event.__slots__}, "timestamp": ts})
    assert event_to_dict(event)["timestamp"] == ts.isoformat()
    for _ in range(2):  # the second from the memo
        minute = floor_minute(ts)
        expected = ts.replace(second=0, microsecond=0)
        assert minute == expected and minute.tzinfo is expected.tzinfo and minute.fold == expected.fold
