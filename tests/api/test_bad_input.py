"""Bad input answered 4xx with a message naming the problem, with nothing stored (issue 18, item 6): deeply
nested JSON, times whose offset overflows, forged cursors, values longer than their column."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.errors import InvalidInput
from detector.sources.github import signature_for
from detector.store.db import transaction
from detector.store.models import Base, Deploy, Project, RawItem, Release
from detector.store.projects import create_project

DEEP_ARRAY = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000
OVERFLOWING_TIMES = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"]


def row_counts(factory: sessionmaker[Session]) -> dict[str, int]:
    """Rows in every table: what a refused request must leave as it was."""
    with factory() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def envelope_url(project: Project) -> str:
    return f"/api/{project.id}/envelope/?sentry_key={project.public_key}"


def envelope(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.fixture
def deploy_id(client: TestClient, project: Project, auth: dict[str, str]) -> int:
    answer = client.post(
        f"/api/v1/projects/{project.slug}/deploys", json={"release": "web@1", "environment": "prod"}, headers=auth
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def assert_refused(answer: Any, status: int, *words: str) -> None:
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    for word in words:
        assert word in detail, detail


@pytest.mark.parametrize("deep", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize(
    ("where", "build"),
    [
        ("envelope header", lambda deep: envelope(deep)),
        ("item 0 header", lambda deep: envelope(b"{}", deep, b"{}")),
        ("event payload", lambda deep: envelope(b"{}", b'{"type":"event"}', deep)),
        ("session payload", lambda deep: envelope(b"{}", b'{"type":"session"}', deep)),
        ("sessions payload", lambda deep: envelope(b"{}", b'{"type":"sessions"}', deep)),
    ],
)
def test_deeply_nested_envelope_parts_are_400(
    client: TestClient, project: Project, factory: sessionmaker[Session], where: str, build: Any, deep: bytes
) -> None:
    before = row_counts(factory)
    answer = client.post(envelope_url(project), content=build(deep))
    assert_refused(answer, 400, where, "not valid JSON", "depth limit")
    assert row_counts(factory) == before


def test_deeply_nested_store_body_is_400(client: TestClient, project: Project, factory: sessionmaker[Session]) -> None:
    answer = client.post(f"/api/{project.id}/store/?sentry_key={project.public_key}", content=DEEP_OBJECT)
    assert_refused(answer, 400, "not valid JSON", "depth limit")
    assert row_counts(factory)[RawItem.__tablename__] == 0


@pytest.mark.parametrize(
    ("method", "path", "what"),
    [
        ("POST", "/api/v1/projects/web/deploys", "request body"),
        ("POST", "/api/0/organizations/{org}/releases/", "request body"),
        ("POST", "/api/0/projects/{org}/web/releases/", "request body"),
        ("PUT", "/api/0/organizations/{org}/releases/web@1/", "request body"),
        ("POST", "/api/0/organizations/{org}/releases/web@1/deploys/", "request body"),
        ("POST", "/api/0/organizations/{org}/artifactbundle/assemble/", "assemble request"),
    ],
)
def test_deeply_nested_api_bodies_are_400(
    client: TestClient,
    project: Project,
    auth: dict[str, str],
    deploy_id: int,
    factory: sessionmaker[Session],
    method: str,
    path: str,
    what: str,
) -> None:
    before = row_counts(factory)
    for deep in (DEEP_ARRAY, DEEP_OBJECT):
        answer = client.request(
            method,
            path.format(org=project.org),
            content=deep,
            headers={**auth, "Content-Type": "application/json"},
        )
        assert_refused(answer, 400, what, "not valid JSON", "depth limit")
    assert row_counts(factory) == before


def test_deeply_nested_signed_webhook_is_400(
    client: TestClient, project: Project, factory: sessionmaker[Session]
) -> None:
    before = row_counts(factory)
    answer = client.post(
        f"/api/v1/webhooks/github?project={project.slug}",
        content=DEEP_OBJECT,
        headers={
            "X-GitHub-Event": "deployment_status",
            "X-Hub-Signature-256": signature_for(project.github_secret or "", DEEP_OBJECT),
        },
    )
    assert_refused(answer, 400, "webhook body is not valid JSON", "depth limit")
    assert row_counts(factory) == before


def test_deeply_nested_gate_body_is_read_as_no_token(client: TestClient, project: Project, deploy_id: int) -> None:
    # a Flagger body that is not JSON carries no token: 401, as with no body at all
    answer = client.post(f"/api/v1/projects/{project.slug}/deploys/{deploy_id}/gate", content=DEEP_OBJECT)
    assert_refused(answer, 401, "missing API token")


@pytest.mark.parametrize("when", OVERFLOWING_TIMES)
def test_event_and_session_times_whose_offset_overflows_are_400(
    client: TestClient, project: Project, factory: sessionmaker[Session], when: str
) -> None:
    items = {
        "timestamp": (b'{"type":"event"}', {"event_id": uuid.uuid4().hex, "timestamp": when, "message": "boom"}),
        "started": (b'{"type":"session"}', {"sid": uuid.uuid4().hex, "started": when, "attrs": {"release": "web@1"}}),
        "aggregates[0].started": (
            b'{"type":"sessions"}',
            {"aggregates": [{"started": when, "exited": 1}], "attrs": {"release": "web@1"}},
        ),
    }
    for field, (header, payload) in items.items():
        answer = client.post(envelope_url(project), content=envelope(b"{}", header, json.dumps(payload).encode()))
        assert_refused(answer, 400, field, when, "out of range")
    assert row_counts(factory)[RawItem.__tablename__] == 0


@pytest.mark.parametrize("when", OVERFLOWING_TIMES)
def test_query_times_whose_offset_overflows_are_422(
    client: TestClient, project: Project, auth: dict[str, str], when: str
) -> None:
    base = f"/api/v1/projects/{project.slug}"
    for method, path, param in [
        ("GET", f"{base}/signatures", "since"),
        ("GET", f"{base}/signatures/1/series", "since"),
        ("GET", f"{base}/signatures/1/series", "until"),
        ("GET", f"{base}/anomalies", "since"),
        ("POST", f"{base}/detect", "at"),
    ]:
        answer = client.request(method, path, params={param: when}, headers=auth)
        assert_refused(answer, 422, f"query.{param}", "out of range")


@pytest.mark.parametrize("when", OVERFLOWING_TIMES)
def test_deploy_and_release_times_whose_offset_overflows_are_400(
    client: TestClient, project: Project, auth: dict[str, str], factory: sessionmaker[Session], when: str
) -> None:
    before = row_counts(factory)
    answer = client.post(
        f"/api/v1/projects/{project.slug}/deploys",
        json={"release": "web@2", "environment": "prod", "finished": when},
        headers=auth,
    )
    assert_refused(answer, 400, "finished", "out of range")
    answer = client.post(
        f"/api/0/organizations/{project.org}/releases/",
        json={"version": "web@2", "projects": [project.slug], "dateReleased": when},
        headers=auth,
    )
    assert_refused(answer, 400, "dateReleased", "out of range")
    assert row_counts(factory) == before


FORGED_CURSORS = [
    "not base64!",
    cursor_of("text"),
    cursor_of(1.5),
    cursor_of(True),
    cursor_of(-1),
    cursor_of(10**30),
    cursor_of({"id": 1}),
    cursor_of(["x", "y"]),
    cursor_of([1e308, 2]),
    cursor_of(["0001-01-01T00:00:00+05:00", 1]),
    cursor_of(["2026-01-01T00:00:00Z", 10**30]),
    base64.urlsafe_b64encode(DEEP_ARRAY[:3000]).decode(),
]


@pytest.mark.parametrize("cursor", FORGED_CURSORS)
def test_forged_cursors_are_400(
    client: TestClient, project: Project, auth: dict[str, str], deploy_id: int, cursor: str
) -> None:
    for path in ("signatures", "anomalies", "deploys"):
        answer = client.get(f"/api/v1/projects/{project.slug}/{path}", params={"cursor": cursor}, headers=auth)
        assert_refused(answer, 400, "invalid cursor")


def test_a_cursor_the_server_wrote_still_pages(
    client: TestClient, project: Project, auth: dict[str, str], factory: sessionmaker[Session]
) -> None:
    for n in range(3):
        answer = client.post(
            f"/api/v1/projects/{project.slug}/deploys",
            json={"release": f"web@{n}", "environment": "prod"},
            headers=auth,
        )
        assert answer.status_code == 201, answer.text
    first = client.get(f"/api/v1/projects/{project.slug}/deploys", params={"limit": 2}, headers=auth).json()
    second = client.get(
        f"/api/v1/projects/{project.slug}/deploys", params={"limit": 2, "cursor": first["next"]}, headers=auth
    ).json()
    releases = [d["release"] for d in first["items"] + second["items"]]
    assert sorted(releases) == ["web@0", "web@1", "web@2"] and second["next"] is None


LONG = "x" * 251


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v1/projects/web/deploys", {"release": "web@1", "environment": "prod", "name": LONG}, "name"),
        ("POST", "/api/v1/projects/web/deploys", {"release": LONG, "environment": "prod"}, "release"),
        ("POST", "/api/v1/projects/web/deploys", {"release": "web@1", "environment": LONG[:65]}, "environment"),
        ("POST", "/api/0/organizations/{org}/releases/", {"version": "v9", "projects": ["web"], "ref": LONG}, "ref"),
        ("POST", "/api/0/organizations/{org}/releases/", {"version": LONG, "projects": ["web"]}, "version"),
        ("PUT", "/api/0/organizations/{org}/releases/web@1/", {"ref": LONG}, "ref"),
        ("POST", "/api/0/organizations/{org}/releases/web@1/deploys/", {"environment": "prod", "name": LONG}, "name"),
        ("POST", "/api/0/organizations/{org}/releases/web@1/deploys/", {"environment": LONG[:65]}, "environment"),
    ],
)
def test_values_longer_than_their_column_are_400_and_store_nothing(
    client: TestClient,
    project: Project,
    auth: dict[str, str],
    deploy_id: int,
    factory: sessionmaker[Session],
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    before = row_counts(factory)
    answer = client.request(method, path.format(org=project.org), json=body, headers=auth)
    assert_refused(answer, 400, field)
    assert row_counts(factory) == before
    with factory() as session:
        assert [r.ref for r in session.scalars(select(Release))] == [None]
        assert [d.name for d in session.scalars(select(Deploy))] == [None]


def test_a_project_org_longer_than_its_column_is_refused(factory: sessionmaker[Session]) -> None:
    # written by the ORM (the deploy routes above also write with Core upserts): both are checked
    refused = pytest.raises(InvalidInput, match=r"org is 65 characters long, over the limit of 64 \(projects.org\)")
    with refused, transaction(factory) as session:
        create_project(session, slug="shop", org="o" * 65)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0


def test_a_nul_in_a_path_or_query_is_400(client: TestClient, project: Project, auth: dict[str, str]) -> None:
    # PostgreSQL refuses a NUL in any text parameter, even a lookup's (found by tests/api/test_fuzz.py)
    answer = client.get("/api/v1/projects/web%00", headers=auth)
    assert_refused(answer, 400, "slug contains a NUL character")
    answer = client.get(f"/api/v1/projects/{project.slug}/deploys?environment=a%00", headers=auth)
    assert_refused(answer, 400, "environment contains a NUL character")


@pytest.mark.parametrize("number", [2**63, 10**20, -(10**20)])
def test_ids_past_64_bits_are_400(client: TestClient, project: Project, auth: dict[str, str], number: int) -> None:
    base = f"/api/v1/projects/{project.slug}"
    for method, path in [
        ("GET", f"{base}/deploys/{number}"),
        ("GET", f"{base}/deploys/{number}/verdict"),
        ("GET", f"{base}/anomalies/{number}"),
        ("POST", f"{base}/anomalies/{number}/resolve"),
        ("GET", f"{base}/signatures/{number}/series"),
        ("GET", f"{base}/anomalies?deploy_id={number}"),
    ]:
        answer = client.request(method, path, headers=auth)
        assert_refused(answer, 400, str(number), "outside the range of a 64-bit integer")
