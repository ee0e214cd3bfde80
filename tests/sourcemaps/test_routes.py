"""chunk-upload and artifactbundle/assemble in-process, on the test database (SQLite or PostgreSQL)."""

from __future__ import annotations

import gzip

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.routes.sentry_artifacts import LIMITS
from detector.config import Settings
from detector.store.models import ArtifactBundle, ArtifactFile, Project, UploadChunk
from tests.sourcemaps.conftest import BundleBuilder, sha1

ORG = "default"  # Settings().org, the org of the `project` fixture
BASE = f"/api/0/organizations/{ORG}"


def upload_chunks(
    client: TestClient, auth: dict[str, str], chunks: list[bytes], *, names: list[str] | None = None
) -> tuple[int, dict[str, object]]:
    names = names or [sha1(c) for c in chunks]
    files = [
        ("file_gzip", (name, gzip.compress(c), "application/octet-stream"))
        for name, c in zip(names, chunks, strict=True)
    ]
    response = client.post(f"{BASE}/chunk-upload/", files=files, headers=auth)
    return response.status_code, response.json()


def assemble(client: TestClient, auth: dict[str, str], data: bytes, chunks: list[bytes]) -> dict[str, object]:
    response = client.post(
        f"{BASE}/artifactbundle/assemble/",
        json={
            "checksum": sha1(data),
            "chunks": [sha1(c) for c in chunks],
            "projects": ["web"],
            "version": "web@1.2.0",
        },
        headers=auth,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def counts(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    with factory() as session:
        return (
            session.scalar(select(func.count()).select_from(ArtifactBundle)) or 0,
            session.scalar(select(func.count()).select_from(ArtifactFile)) or 0,
            session.scalar(select(func.count()).select_from(UploadChunk)) or 0,
        )


def test_options_point_sentry_cli_at_the_absolute_upload_url(
    client: TestClient, auth: dict[str, str], project: Project, settings: Settings
) -> None:
    response = client.get(f"{BASE}/chunk-upload/", headers=auth)
    assert response.status_code == 200
    options = response.json()
    # the test settings set no public URL, so the request's own base is used
    assert options["url"] == f"http://testserver{BASE}/chunk-upload/"
    assert options["hashAlgorithm"] == "sha1"
    assert options["compression"] == ["gzip"]
    assert "artifact_bundles" in options["accept"]
    assert options["chunkSize"] == LIMITS.chunk_size


def test_a_configured_public_url_wins(settings: Settings, auth: dict[str, str], project: Project) -> None:
    from api.app import create_app

    configured = settings.model_copy(update={"public_url": "https://errors.example.com/"})
    configured.model_fields_set.add("public_url")
    with TestClient(create_app(configured)) as client:
        options = client.get(f"{BASE}/chunk-upload/", headers=auth).json()
    assert options["url"] == f"https://errors.example.com{BASE}/chunk-upload/"


def test_routes_need_a_token_and_a_known_org(client: TestClient, auth: dict[str, str], project: Project) -> None:
    assert client.get(f"{BASE}/chunk-upload/").status_code == 401
    assert client.get(f"{BASE}/chunk-upload/", headers={"Authorization": "Bearer nope"}).status_code == 401
    response = client.get("/api/0/organizations/acme/chunk-upload/", headers=auth)
    assert response.status_code == 404
    assert "acme" in response.json()["detail"]
    response = client.post(
        "/api/0/organizations/acme/artifactbundle/assemble/",
        json={"checksum": "a" * 40, "chunks": [], "projects": ["web"]},
        headers=auth,
    )
    assert response.status_code == 404


def test_upload_in_chunks_then_assemble_stores_the_bundle_and_its_files(
    client: TestClient,
    auth: dict[str, str],
    project: Project,
    fixture_bundle: BundleBuilder,
    factory: sessionmaker[Session],
) -> None:
    data = fixture_bundle.build()
    chunks = split(data, 100_000)
    assert len(chunks) > 3

    first = assemble(client, auth, data, chunks)
    assert first == {"state": "not_found", "missingChunks": [sha1(c) for c in chunks]}

    status, body = upload_chunks(client, auth, chunks[:2])
    assert status == 200
    assert body == {"chunks": sorted(sha1(c) for c in chunks[:2])}
    assert assemble(client, auth, data, chunks)["missingChunks"] == [sha1(c) for c in chunks[2:]]
    assert upload_chunks(client, auth, chunks[2:])[0] == 200

    assert assemble(client, auth, data, chunks) == {"state": "ok", "missingChunks": []}
    with factory() as session:
        bundle = session.scalars(select(ArtifactBundle)).one()
        files = {f.url: f for f in session.scalars(select(ArtifactFile))}
    assert (bundle.org, bundle.release, bundle.checksum) == (ORG, "web@1.2.0", sha1(data))
    assert bytes(bundle.data) == data
    assert files["~/app.js"].file_type == "minified_source"
    assert files["~/app.js"].sourcemap == "app.js.map"
    assert files["~/app.js"].release == "web@1.2.0"
    assert files["~/app.js.map"].file_type == "source_map"
    assert counts(factory) == (1, 2, 0)  # chunks are gone once the bundle holds them

    # asking again is answered from the stored bundle, even though the chunks are gone
    assert assemble(client, auth, data, chunks) == {"state": "ok", "missingChunks": []}
    assert counts(factory) == (1, 2, 0)


def test_a_chunk_whose_sha1_does_not_match_is_refused_naming_it(
    client: TestClient, auth: dict[str, str], project: Project, factory: sessionmaker[Session]
) -> None:
    good, bad = b"good chunk", b"tampered chunk"
    wrong_name = sha1(b"what sentry-cli hashed")
    status, body = upload_chunks(client, auth, [good, bad], names=[sha1(good), wrong_name])
    assert status == 400
    assert wrong_name in str(body["detail"])
    assert counts(factory) == (0, 0, 0)  # the good chunk of the same request is not kept either


def test_chunks_may_be_sent_uncompressed_in_field_file(
    client: TestClient, auth: dict[str, str], project: Project, factory: sessionmaker[Session]
) -> None:
    chunk = b"plain chunk"
    response = client.post(
        f"{BASE}/chunk-upload/", files=[("file", (sha1(chunk), chunk, "application/octet-stream"))], headers=auth
    )
    assert response.status_code == 200
    assert counts(factory)[2] == 1


MALFORMED_CHUNK_UPLOADS: list[tuple[dict[str, object], str]] = [
    ({"files": [("file_gzip", ("a" * 40, b"not gzip", "application/octet-stream"))]}, "not valid gzip"),
    ({"files": [("other", ("a" * 40, b"x", "application/octet-stream"))]}, "no chunks"),
    ({"content": b"raw", "headers": {"Content-Type": "application/octet-stream"}}, "multipart/form-data"),
    ({"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, ""),
]


def test_malformed_chunk_uploads_are_400(
    client: TestClient, auth: dict[str, str], project: Project, factory: sessionmaker[Session]
) -> None:
    for kwargs, message in MALFORMED_CHUNK_UPLOADS:
        extra_headers: dict[str, str] = kwargs.get("headers", {})  # type: ignore[assignment]
        body = {k: v for k, v in kwargs.items() if k != "headers"}
        response = client.post(f"{BASE}/chunk-upload/", headers={**auth, **extra_headers}, **body)  # type: ignore[arg-type]
        assert response.status_code == 400, (kwargs, response.text)
        assert message in response.json()["detail"]
    assert counts(factory) == (0, 0, 0)


def test_a_request_over_the_size_limit_is_413(client: TestClient, auth: dict[str, str], project: Project) -> None:
    headers = {**auth, "Content-Type": "multipart/form-data; boundary=x"}
    too_big = LIMITS.max_request_size + 1024 * 1024
    response = client.post(f"{BASE}/chunk-upload/", headers={**headers, "Content-Length": str(too_big)}, content=b"")
    assert response.status_code == 413


def _store_and_assemble(client: TestClient, auth: dict[str, str], data: bytes) -> dict[str, object]:
    assert upload_chunks(client, auth, [data])[0] == 200
    return assemble(client, auth, data, [data])


def test_unusable_bundles_are_an_error_state_with_the_reason_and_store_nothing(
    client: TestClient, auth: dict[str, str], project: Project, factory: sessionmaker[Session], app_js: bytes
) -> None:
    bad_map = (
        BundleBuilder()
        .add("~/app.js", app_js, "minified_source", {"sourcemap": "app.js.map"})
        .add("~/app.js.map", b"<html>404 Not Found</html>", "source_map")
    )
    cases = [
        (b"PK\x03\x04 this is not a zip", "not a valid zip"),
        (BundleBuilder(include_manifest=False).add("~/app.js", app_js, "minified_source").build(), "no manifest.json"),
        (bad_map.build(), "source map '~/app.js.map'"),
    ]
    for data, reason in cases:
        result = _store_and_assemble(client, auth, data)
        # sentry-cli prints the detail: "Failed to process uploaded files: <detail>"
        assert result["state"] == "error"
        assert reason in str(result["detail"])
        assert counts(factory)[:2] == (0, 0)


def test_chunks_that_do_not_add_up_to_the_checksum_are_an_error_state(
    client: TestClient, auth: dict[str, str], project: Project, factory: sessionmaker[Session]
) -> None:
    a, b = b"first half ", b"second half"
    assert upload_chunks(client, auth, [a, b])[0] == 200
    response = client.post(
        f"{BASE}/artifactbundle/assemble/",
        json={"checksum": sha1(a + b), "chunks": [sha1(b), sha1(a)], "projects": ["web"]},
        headers=auth,
    )
    assert response.json()["state"] == "error"
    assert "not the announced" in response.json()["detail"]
    assert counts(factory)[:2] == (0, 0)


def test_malformed_assemble_requests_are_400(client: TestClient, auth: dict[str, str], project: Project) -> None:
    cases = [
        (b"{not json", "not valid JSON"),
        (b'{"checksum": "xyz", "chunks": [], "projects": ["web"]}', "'checksum'"),
        (b'{"checksum": "' + b"a" * 40 + b'", "chunks": [], "projects": ["shop"]}', "shop"),
    ]
    for body, message in cases:
        response = client.post(
            f"{BASE}/artifactbundle/assemble/",
            content=body,
            headers={**auth, "Content-Type": "application/json"},
        )
        assert response.status_code == 400, body
        assert message in response.json()["detail"]


def test_artifact_names_with_dot_dot_or_absolute_paths_are_refused_with_400_and_store_nothing(
    client: TestClient, auth: dict[str, str], project: Project, factory: sessionmaker[Session], app_js: bytes
) -> None:
    def bundle_with(path: str, url: str) -> bytes:
        builder = BundleBuilder()
        builder.files[path] = (app_js, {"type": "minified_source", "url": url})
        return builder.build()

    cases = [
        (bundle_with("files/_/_/app.js", "~/../../etc/passwd"), "'..' segment"),
        (bundle_with("files/_/_/app.js", "https://cdn.example/static/../../app.js"), "'..' segment"),
        (bundle_with("files/_/_/app.js", "/etc/passwd"), "absolute path"),
        (bundle_with("../../app.js", "~/app.js"), "'..' segment"),
        (bundle_with("/tmp/app.js", "~/app.js"), "absolute path"),
        (bundle_with("files/_/_/app.js", "~/static/%2e%2e/app.js"), "'..' segment"),
    ]
    for data, reason in cases:
        assert upload_chunks(client, auth, [data])[0] == 200
        response = client.post(
            f"{BASE}/artifactbundle/assemble/",
            json={"checksum": sha1(data), "chunks": [sha1(data)], "projects": ["web"], "version": "web@1.2.0"},
            headers=auth,
        )
        assert response.status_code == 400, response.text
        assert reason in response.json()["detail"] and "artifact bundle refused" in response.json()["detail"]
        assert counts(factory)[:2] == (0, 0)

    fine = bundle_with("files/_/_/static/app.js", "~/static/app.js")  # the same bundle, named plainly
    assert upload_chunks(client, auth, [fine])[0] == 200
    assert assemble(client, auth, fine, [fine])["state"] == "ok"
    assert counts(factory)[:2] == (1, 1)
