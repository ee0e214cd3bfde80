"""Fuzzing every route (issue 18, item 6): no generated input gets a 5xx, and a good request still works after.

The documented routes are fuzzed by schemathesis from the app's own `/openapi.json`: each operation's path,
query and body parameters are generated from its schema, half the time with the path pointing at objects
that exist (so the route gets past its 404). Routes whose bodies the schema does not describe (sentry-cli's
release bodies, the GitHub webhook, Sentry intake) are fuzzed with Hypothesis strategies built from the
fields those routes read. Profiles are derandomized and database-free, so a CI run is reproducible;
`DETECTOR_FUZZ_SCALE=10` runs ten times the examples locally.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import uuid
import zlib
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.sources.github import signature_for
from detector.store.models import Project, RawItem

SCALE = float(os.environ.get("DETECTOR_FUZZ_SCALE", "1"))
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def examples(n: int) -> settings:
    return settings(FUZZ, max_examples=max(1, int(n * SCALE)))


# -- values clients get wrong ----------------------------------------------------------------------

times = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "9999-12-31T23:59:59Z",
            "1969-12-31T23:59:59Z",
            "2026-11-27T15:04:21.608110555Z",
            "2026-13-45T99:00:00",
            "yesterday",
            "",
        ]
    ),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.floats(allow_nan=False),
    st.integers(min_value=-(2**70), max_value=2**70),
)
texts = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=0, max_value=3000).map(lambda n: "x" * n),
    st.sampled_from(["a\x00b", "line\nbreak", "\ud800", "web@1", "prod", "../../etc/passwd", " "]),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), st.floats(), texts, times
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
deep_json = st.integers(min_value=900, max_value=3000).map(lambda n: "[" * n + "]" * n)

BODY_FIELDS = [
    "version", "projects", "ref", "url", "dateStarted", "dateReleased", "dateFinished", "commits", "refs",
    "environment", "name", "release", "sha", "from_sha", "started", "finished", "checksum", "chunks",
    "dist", "metadata", "repository", "previousCommit", "id", "message", "author_name", "author_email",
    "timestamp", "patch_set", "files", "path", "type",
]  # fmt: skip
"""The keys the release, deploy and assemble parsers read, so generated bodies reach past the first check."""


def objects_of(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    field_values = st.one_of(json_values, st.lists(st.dictionaries(st.sampled_from(fields), json_values), max_size=3))
    return st.dictionaries(st.sampled_from(fields), field_values, max_size=8)


bodies = st.one_of(objects_of(BODY_FIELDS), json_values, deep_json)


def as_content(body: Any) -> bytes:
    if isinstance(body, str) and body.startswith("["):
        return body.encode()
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


# -- fixtures: a project with a release, a deploy and an event, so routes find something -------------


def post_envelope(client: TestClient, project: Project, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post(f"/api/{project.id}/envelope/?sentry_key={project.public_key}", content=body, headers=headers)


def good_event_envelope() -> bytes:
    event = {
        "event_id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "release": "web@1",
        "environment": "prod",
        "exception": {"values": [{"type": "TypeError", "value": "x is undefined"}]},
    }
    return b"\n".join([b"{}", b'{"type":"event"}', json.dumps(event).encode()])


def seed(client: TestClient, project: Project, auth: dict[str, str]) -> dict[str, str]:
    """Objects for the path parameters to name, and the values that name them."""
    deploy = client.post(
        f"/api/v1/projects/{project.slug}/deploys", json={"release": "web@1", "environment": "prod"}, headers=auth
    )
    assert deploy.status_code == 201, deploy.text
    assert post_envelope(client, project, good_event_envelope()).status_code == 200
    return {
        "slug": project.slug,
        "org": project.org,
        "project": project.slug,
        "version": "web@1",
        "deploy_id": str(deploy.json()["id"]),
        "signature_id": "1",
        "anomaly_id": "1",
    }


def assert_still_serving(client: TestClient, project: Project, auth: dict[str, str], factory: Any) -> None:
    with factory() as session:
        before = session.scalar(select(func.count()).select_from(RawItem)) or 0
    answer = post_envelope(client, project, good_event_envelope())
    assert answer.status_code == 200, answer.text
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(RawItem)) == before + 1
    listed = client.get(f"/api/v1/projects/{project.slug}/deploys", headers=auth)
    assert listed.status_code == 200 and listed.json()["items"], listed.text


def assert_not_5xx(answer: Any, request: dict[str, Any]) -> None:
    assert answer.status_code < 500, f"{answer.status_code} for {request}: {answer.text[:500]}"


# -- the tests ---------------------------------------------------------------------------------------


def test_no_documented_route_answers_5xx(
    client: TestClient, project: Project, auth: dict[str, str], factory: sessionmaker[Session]
) -> None:
    known = seed(client, project, auth)
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30, [op.label for op in operations]  # every documented route is fuzzed

    for operation in operations:

        @examples(15)
        @given(case=operation.as_strategy(), data=st.data())
        def fuzz(case: Any, data: st.DataObject) -> None:
            if case.path_parameters and data.draw(st.booleans(), label="known objects"):
                case.path_parameters = {k: known.get(k, v) for k, v in case.path_parameters.items()}
            elif case.path_parameters and data.draw(st.booleans(), label="ids past 64 bits"):
                huge = data.draw(st.integers(min_value=2**63, max_value=2**80) | st.integers(max_value=-(2**63)))
                case.path_parameters = {
                    k: (str(huge) if k.endswith("_id") else known.get(k, v)) for k, v in case.path_parameters.items()
                }
            request = case.as_transport_kwargs(base_url="http://testserver", headers=auth)
            if case.method.upper() in ("POST", "PUT") and data.draw(st.booleans(), label="free body"):
                request.pop("json", None)
                request["content"] = as_content(data.draw(bodies, label="body"))
                request["headers"] = {**request.get("headers", {}), "Content-Type": "application/json"}
            request.pop("cookies", None)
            assert_not_5xx(client.request(**request), request)

        fuzz()
    assert_still_serving(client, project, auth, factory)


SENTRY_BODY_ROUTES = [
    ("POST", "/api/0/organizations/{org}/releases/"),
    ("POST", "/api/0/projects/{org}/{project}/releases/"),
    ("PUT", "/api/0/organizations/{org}/releases/{version}/"),
    ("PUT", "/api/0/projects/{org}/{project}/releases/{version}/"),
    ("POST", "/api/0/organizations/{org}/releases/{version}/deploys/"),
    ("POST", "/api/v1/projects/{slug}/deploys"),
    ("POST", "/api/0/organizations/{org}/artifactbundle/assemble/"),
]


def test_no_release_deploy_or_assemble_body_answers_5xx(
    client: TestClient, project: Project, auth: dict[str, str], factory: sessionmaker[Session]
) -> None:
    known = seed(client, project, auth)

    @examples(40)
    @given(route=st.sampled_from(SENTRY_BODY_ROUTES), body=bodies)
    def fuzz(route: tuple[str, str], body: Any) -> None:
        method, path = route
        if isinstance(body, dict) and "projects" in body and body["projects"] is None:
            body["projects"] = [project.slug]
        request = {
            "method": method,
            "url": path.format(**known),
            "content": as_content(body),
            "headers": {**auth, "Content-Type": "application/json"},
        }
        assert_not_5xx(client.request(**request), request)

    fuzz()
    assert_still_serving(client, project, auth, factory)


WEBHOOK_FIELDS = [
    "deployment", "deployment_status", "state", "environment", "sha", "ref", "id", "task", "created_at",
    "updated_at", "commits", "head_commit", "repository", "timestamp", "message", "author", "added", "modified",
    "removed", "payload", "url", "target_url", "environment_url",
]  # fmt: skip


def test_no_signed_webhook_answers_5xx(
    client: TestClient, project: Project, auth: dict[str, str], factory: sessionmaker[Session]
) -> None:
    seed(client, project, auth)

    @examples(60)
    @given(
        event=st.sampled_from(["ping", "push", "deployment_status", "issues", ""]),
        body=st.one_of(objects_of(WEBHOOK_FIELDS), json_values, deep_json),
    )
    def fuzz(event: str, body: Any) -> None:
        content = as_content(body)
        request = {
            "method": "POST",
            "url": f"/api/v1/webhooks/github?project={project.slug}",
            "content": content,
            "headers": {"X-GitHub-Event": event, "X-Hub-Signature-256": signature_for(project.github_secret, content)},
        }
        assert_not_5xx(client.request(**request), request)

    fuzz()
    assert_still_serving(client, project, auth, factory)


EVENT_FIELDS = [
    "event_id", "timestamp", "release", "environment", "exception", "message", "user", "tags", "contexts",
    "request", "platform", "level", "logentry", "fingerprint", "breadcrumbs", "values", "type", "value",
    "stacktrace", "frames", "filename", "lineno", "sid", "did", "started", "status", "errors", "duration", "attrs",
    "aggregates", "exited", "errored", "crashed", "abnormal", "init", "seq", "trace", "trace_id", "id",
    "ip_address", "user_agent", "dsn", "sent_at", "length",
]  # fmt: skip


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """An envelope of generated headers and items (events, sessions, others), sometimes compressed."""
    lines = [as_content(draw(st.one_of(objects_of(EVENT_FIELDS), json_values, deep_json)))]
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        header: dict[str, Any] = {"type": draw(st.sampled_from(["event", "session", "sessions", "transaction", ""]))}
        if draw(st.booleans()):
            header.update(draw(objects_of(["length", "type", "content_type"])))
        payload = draw(st.one_of(objects_of(EVENT_FIELDS), json_values, deep_json, st.binary(max_size=40)))
        lines += [as_content(header), payload if isinstance(payload, bytes) else as_content(payload)]
    body = b"\n".join(lines)
    encoding = draw(st.sampled_from(["", "gzip", "deflate", "br", "gzip, deflate"]))
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "deflate" and draw(st.booleans()):
        body = zlib.compress(body)
    return body, ({"Content-Encoding": encoding} if encoding else {})


def test_no_intake_request_answers_5xx(
    client: TestClient, project: Project, auth: dict[str, str], factory: sessionmaker[Session]
) -> None:
    seed(client, project, auth)

    @examples(150)
    @given(envelope=envelopes(), kind=st.sampled_from(["envelope", "store"]))
    def fuzz(envelope: tuple[bytes, dict[str, str]], kind: str) -> None:
        body, headers = envelope
        if kind == "store":
            body = body.split(b"\n", 1)[0]
        request = {
            "method": "POST",
            "url": f"/api/{project.id}/{kind}/?sentry_key={project.public_key}",
            "content": body,
            "headers": headers,
        }
        assert_not_5xx(client.request(**request), request)

    fuzz()
    assert_still_serving(client, project, auth, factory)
