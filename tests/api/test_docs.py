"""/docs works offline (its assets are served by the app), declares the bearer scheme, and shows shapes."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api import schemas
from detector.store.models import Deploy, Event, Project, Signature
from detector.times import iso_utc
from tests.test_notify import seed_incident


def test_docs_load_every_asset_from_the_app_itself(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: ?'([^']+)'", page.text)
    assert urls and all(u.startswith("/") for u in urls), urls  # nothing from a CDN
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
    js = client.get(next(u for u in urls if u.endswith(".js")))
    assert "SwaggerUIBundle" in js.text


def test_the_bearer_scheme_is_declared_for_the_routes_that_need_a_token(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    (name, scheme), *_ = spec["components"]["securitySchemes"].items()
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    needs = spec["paths"]["/api/v1/projects/{slug}/anomalies"]["get"]["security"]
    assert needs == [{name: []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_native_routes_document_their_response_shapes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in methods.items():
            schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            ref = schema.get("$ref", "")
            assert ref.startswith("#/components/schemas/"), f"{method.upper()} {path}: {schema}"
            model = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
            assert model.get("properties"), f"{method.upper()} {path}: {ref} has no documented fields"


def _json_ref(operation: dict[str, object]) -> str | None:
    """The schema reference of an operation's 200 answer, if it has one."""
    content = operation["responses"].get("200", {}).get("content", {})  # type: ignore[attr-defined]
    return content.get("application/json", {}).get("schema", {}).get("$ref")


def test_real_answers_match_their_documented_shapes(
    client: TestClient, auth: dict[str, str], factory: sessionmaker[Session], project: Project
) -> None:
    deployed = seed_incident(factory, project)
    detect = client.post(
        "/api/v1/projects/web/detect", params={"at": iso_utc(deployed + timedelta(minutes=4))}, headers=auth
    )
    assert detect.status_code == 200 and detect.json()["changes"]
    anomaly = detect.json()["changes"][0]["anomaly"]
    with factory() as session:
        signature_id = session.scalars(select(Signature.id)).first()
        event_id = session.scalars(select(Event.event_id)).first()
        deploy_id, version = session.execute(select(Deploy.id, Deploy.release)).first()  # type: ignore[misc]
    values = {
        "slug": "web", "anomaly_id": anomaly["id"], "signature_id": signature_id, "event_id": event_id,
        "deploy_id": deploy_id, "action": "acknowledge", "version": version,
    }  # fmt: skip
    spec = client.get("/openapi.json").json()
    models = {
        (path, method.upper()): getattr(schemas, ref.rsplit("/", 1)[1])
        for path, methods in spec["paths"].items()
        if path.startswith("/api/v1/projects")
        for method, operation in methods.items()
        if (
            ref := operation["responses"]
            .get("200", {})
            .get("content", {})
            .get("application/json", {})
            .get("schema", {})
            .get("$ref")
        )
    }
    checked = 0
    for (path, method), model in sorted(models.items()):
        if (path, method) == ("/api/v1/projects/{slug}/detect", "POST"):
            model.model_validate(detect.json())
            continue
        if (path, method) == ("/api/v1/projects/{slug}/deploys", "POST"):
            sent = client.post(
                path.format(**values), json={"release": "web@1.3.0", "environment": "production"}, headers=auth
            )
            assert sent.status_code == 201, sent.text
            model.model_validate(sent.json())
            continue
        url = path.format(**values)
        answer = client.request(method, url, headers=auth)
        # a gate answers 412 for anything but healthy, with the same documented body
        expected = (200, 412) if path.endswith("/gate") else (200,)
        assert answer.status_code in expected, f"{method} {url}: {answer.text[:300]}"
        body = answer.json()
        model.model_validate(body)
        if isinstance(body.get("items"), list):
            assert body["items"], f"{method} {url} listed nothing to check"
        checked += 1
    assert checked >= 10
