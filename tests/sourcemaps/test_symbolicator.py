"""The digest's symbolicator against stored bundles (SQLite or PostgreSQL), with the real fixture event."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.orm import Session, sessionmaker

from detector.intake.normalize import Frame, NormalizedEvent, normalize_event
from detector.sourcemaps.bundle import parse_bundle
from detector.sourcemaps.symbolicator import ArtifactSymbolicator
from detector.store import artifacts
from detector.store.db import transaction
from detector.store.models import Project
from tests.sourcemaps.conftest import BundleBuilder, sha1

DEBUG_ID = "c0ffee00-1111-4222-8333-444455556666"


def store(factory: sessionmaker[Session], data: bytes, *, org: str = "default", release: str | None = None) -> int:
    """Store `data` as the assemble endpoint does, validating only what parses (tests may store bad maps)."""
    bundle = parse_bundle(data, max_uncompressed=64 * 1024 * 1024)
    with transaction(factory) as session:
        return artifacts.store_bundle(
            session,
            org=org,
            checksum=sha1(data),
            release=release or bundle.release,
            dist=None,
            debug_id=bundle.debug_id,
            manifest=bundle.manifest,
            data=data,
            files=[artifacts.BundleFileRow(f.path, f.url, f.file_type, f.debug_id, f.sourcemap) for f in bundle.files],
        )


@pytest.fixture(scope="module")
def event_payload(fixtures_dir: Path) -> dict[str, Any]:
    raw = (fixtures_dir / "real-clients" / "browser-03-event.envelope").read_bytes()
    return dict(json.loads(raw.split(b"\n")[2]))


def make_event(payload: dict[str, Any], **changes: Any) -> NormalizedEvent:
    return normalize_event({**payload, **changes}, received_at=datetime.now(UTC))


def with_frame_url(event: NormalizedEvent, url: str) -> NormalizedEvent:
    frames = [
        dataclasses.replace(f, filename=url) if (f.filename or "").endswith("/app.js") else f for f in event.frames
    ]
    return dataclasses.replace(event, frames=frames)


def symbolicate(
    factory: sessionmaker[Session], symbolicator: ArtifactSymbolicator, project: Project, event: NormalizedEvent
) -> NormalizedEvent:
    with factory() as session:
        return symbolicator(session, project.id, event)


def assert_resolved(event: NormalizedEvent) -> Frame:
    top = event.frames[-1]
    assert top.filename == "src/features/PaidFeatures.js"
    assert (top.lineno, top.function, top.in_app) == (4, "renderPaidFeatures", True)
    assert "entitlements.map" in (top.context_line or "")
    return top


def test_release_and_url_resolve_the_fixture_event_and_the_map_is_parsed_once(
    factory: sessionmaker[Session], project: Project, fixture_bundle: BundleBuilder, event_payload: dict[str, Any]
) -> None:
    store(factory, fixture_bundle.build())
    symbolicator = ArtifactSymbolicator()
    event = make_event(event_payload)

    resolved = symbolicate(factory, symbolicator, project, event)
    top = assert_resolved(resolved)
    assert top.abs_path == "http://127.0.0.1:9913/src/features/PaidFeatures.js"
    assert (resolved.frames[1].filename, resolved.frames[1].lineno) == ("src/main.js", 5)
    assert resolved.frames[0] == event.frames[0]  # `<anonymous>` has no URL to match: kept as sent
    assert dataclasses.replace(resolved, frames=event.frames) == event  # only the frames change

    again = symbolicate(factory, symbolicator, project, make_event(event_payload))
    assert again.frames == resolved.frames
    assert (symbolicator.cache.misses, symbolicator.cache.hits, len(symbolicator.cache)) == (1, 1, 1)


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/app.js?v=8f2a1c",  # cache-busting query string
        "https://cdn.example.com/static/js/app.js",  # served under a deeper path than uploaded
        "~/app.js",
    ],
)
def test_query_strings_and_path_prefixes_still_match(
    factory: sessionmaker[Session],
    project: Project,
    fixture_bundle: BundleBuilder,
    event_payload: dict[str, Any],
    url: str,
) -> None:
    store(factory, fixture_bundle.build())
    event = with_frame_url(make_event(event_payload), url)
    assert_resolved(symbolicate(factory, ArtifactSymbolicator(), project, event))


def test_frames_stay_as_they_came_when_nothing_matches(
    factory: sessionmaker[Session], project: Project, fixture_bundle: BundleBuilder, event_payload: dict[str, Any]
) -> None:
    store(factory, fixture_bundle.build())
    symbolicator = ArtifactSymbolicator()
    for event in [
        make_event(event_payload, release="web@1.1.0"),  # another release
        make_event(event_payload, release=None),  # no release, no debug ID
        with_frame_url(make_event(event_payload), "http://127.0.0.1:9913/vendor.js"),  # another file
    ]:
        assert symbolicate(factory, symbolicator, project, event) is event
    assert len(symbolicator.cache) == 0


def test_bundles_of_another_org_are_not_used(
    factory: sessionmaker[Session], project: Project, fixture_bundle: BundleBuilder, event_payload: dict[str, Any]
) -> None:
    store(factory, fixture_bundle.build(), org="someone-else")
    event = make_event(event_payload)
    assert symbolicate(factory, ArtifactSymbolicator(), project, event) is event


def test_debug_ids_match_without_a_release(
    factory: sessionmaker[Session],
    project: Project,
    app_js: bytes,
    app_js_map: bytes,
    event_payload: dict[str, Any],
) -> None:
    headers = {"debug-id": DEBUG_ID}
    bundle = (
        BundleBuilder(release=None)
        .add("~/app.js", app_js, "minified_source", {**headers, "sourcemap": "app.js.map"})
        .add("~/app.js.map", app_js_map, "source_map", headers)
    )
    store(factory, bundle.build())
    debug_meta = {"images": [{"type": "sourcemap", "code_file": "http://127.0.0.1:9913/app.js", "debug_id": DEBUG_ID}]}
    event = make_event(event_payload, release=None, debug_meta=debug_meta)
    assert_resolved(symbolicate(factory, ArtifactSymbolicator(), project, event))


def test_the_source_mapping_url_comment_finds_the_map_without_a_header(
    factory: sessionmaker[Session],
    project: Project,
    app_js: bytes,
    app_js_map: bytes,
    event_payload: dict[str, Any],
) -> None:
    assert app_js.rstrip().endswith(b"//# sourceMappingURL=app.js.map")
    bundle = (
        BundleBuilder()
        .add("~/app.js", app_js, "minified_source")
        .add("~/maps/app.js.map", b"{}", "source_map")  # decoy, not referenced
        .add("~/app.js.map", app_js_map, "source_map")
    )
    store(factory, bundle.build())
    assert_resolved(symbolicate(factory, ArtifactSymbolicator(), project, make_event(event_payload)))


def test_a_map_uploaded_without_its_minified_file_still_resolves_positions(
    factory: sessionmaker[Session], project: Project, app_js_map: bytes, event_payload: dict[str, Any]
) -> None:
    store(factory, BundleBuilder().add("~/app.js.map", app_js_map, "source_map").build())
    resolved = symbolicate(factory, ArtifactSymbolicator(), project, make_event(event_payload))
    top = resolved.frames[-1]
    assert (top.filename, top.lineno) == ("src/features/PaidFeatures.js", 4)
    assert "entitlements.map" in (top.context_line or "")


def test_a_newer_bundle_of_the_same_release_wins(
    factory: sessionmaker[Session],
    project: Project,
    fixture_bundle: BundleBuilder,
    app_js: bytes,
    event_payload: dict[str, Any],
) -> None:
    # an older upload whose map knows nothing of line 15, then the real one
    empty_map = b'{"version":3,"sources":["src/old.js"],"names":[],"mappings":"AAAA"}'
    store(
        factory,
        BundleBuilder()
        .add("~/app.js", app_js, "minified_source", {"sourcemap": "app.js.map"})
        .add("~/app.js.map", empty_map, "source_map")
        .build(),
    )
    store(factory, fixture_bundle.build())
    assert_resolved(symbolicate(factory, ArtifactSymbolicator(), project, make_event(event_payload)))


def test_a_stored_map_that_does_not_parse_leaves_frames_unresolved(
    factory: sessionmaker[Session], project: Project, app_js: bytes, event_payload: dict[str, Any]
) -> None:
    # upload validation refuses such maps; a row damaged later must still not break the digest
    data = (
        BundleBuilder()
        .add("~/app.js", app_js, "minified_source", {"sourcemap": "app.js.map"})
        .add("~/app.js.map", b"<html>gone</html>", "source_map")
        .build()
    )
    files = [
        artifacts.BundleFileRow("files/_/_/app.js", "~/app.js", "minified_source", None, "app.js.map"),
        artifacts.BundleFileRow("files/_/_/app.js.map", "~/app.js.map", "source_map", None, None),
    ]
    with transaction(factory) as session:
        artifacts.store_bundle(
            session,
            org="default",
            checksum=sha1(data),
            release="web@1.2.0",
            dist=None,
            debug_id=None,
            manifest={},
            data=data,
            files=files,
        )
    event = make_event(event_payload)
    assert symbolicate(factory, ArtifactSymbolicator(), project, event) is event


def test_a_map_uploaded_after_the_first_events_is_used_once_the_short_miss_memory_expires(
    factory: sessionmaker[Session], project: Project, fixture_bundle: BundleBuilder, event_payload: dict[str, Any]
) -> None:
    now = [1000.0]
    symbolicator = ArtifactSymbolicator(clock=lambda: now[0], missing_ttl=2.0, found_ttl=60.0)
    event = make_event(event_payload)
    assert symbolicate(factory, symbolicator, project, event) is event  # nothing uploaded yet

    store(factory, fixture_bundle.build())
    now[0] += 1.0
    assert symbolicate(factory, symbolicator, project, event) is event  # the miss is remembered briefly
    now[0] += 1.5
    assert_resolved(symbolicate(factory, symbolicator, project, event))

    # once found, the location and the resolved frames are remembered: later events need no queries
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    with factory() as session:
        engine = session.get_bind()
        sqlalchemy_event.listen(engine, "before_cursor_execute", count)
        try:
            assert_resolved(symbolicator(session, project.id, event))
        finally:
            sqlalchemy_event.remove(engine, "before_cursor_execute", count)
    assert statements == []


def test_a_release_without_uploads_costs_no_query_per_event_until_a_bundle_is_stored(
    factory: sessionmaker[Session], project: Project, fixture_bundle: BundleBuilder, event_payload: dict[str, Any]
) -> None:
    now = [1000.0]
    symbolicator = ArtifactSymbolicator(clock=lambda: now[0], missing_ttl=2.0, found_ttl=60.0)
    first = make_event(event_payload)
    assert symbolicate(factory, symbolicator, project, first) is first  # nothing uploaded for any release

    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    # other frame URLs of the same release, long after the first miss: still nothing to look up
    now[0] += 600.0
    with factory() as session:
        engine = session.get_bind()
        sqlalchemy_event.listen(engine, "before_cursor_execute", count)
        try:
            symbolicator(session, project.id, first)  # reads the bundles' generation once
            statements.clear()
            for n in range(20):
                event = with_frame_url(make_event(event_payload), f"https://cdn.example.com/chunk-{n}/app.js")
                assert symbolicator(session, project.id, event) is event
        finally:
            sqlalchemy_event.remove(engine, "before_cursor_execute", count)
    assert statements == []

    # an upload (by any process) is seen once the generation is read again
    store(factory, fixture_bundle.build())
    assert symbolicate(factory, symbolicator, project, first) is first  # within `missing_ttl`: not yet
    now[0] += 2.5
    assert_resolved(symbolicate(factory, symbolicator, project, first))


def test_an_upload_for_another_release_does_not_hide_this_release_s_maps(
    factory: sessionmaker[Session], project: Project, fixture_bundle: BundleBuilder, event_payload: dict[str, Any]
) -> None:
    now = [1000.0]
    symbolicator = ArtifactSymbolicator(clock=lambda: now[0], missing_ttl=2.0, found_ttl=60.0)
    store(factory, dataclasses.replace(fixture_bundle, release="web@1.1.0").build())
    event = make_event(event_payload)  # release web@1.2.0
    assert symbolicate(factory, symbolicator, project, event) is event
    store(factory, fixture_bundle.build())
    now[0] += 2.5
    assert_resolved(symbolicate(factory, symbolicator, project, event))
