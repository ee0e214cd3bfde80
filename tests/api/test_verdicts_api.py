"""The verdict routes on the real app: answers before and after a pass, per deploy and per release, the
gate's statuses (and a Flagger webhook's token in its body), overrides, and refusals."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from detector.store.db import transaction
from detector.store.models import Deploy, Project
from detector.store.projects import get_project_by_slug, set_gate_settings
from detector.times import iso_utc
from tests.test_notify import seed_incident


def _deploy_id(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.query(Deploy.id).one()[0]


def test_a_deploy_no_pass_has_measured_is_pending(
    client: TestClient, auth: dict[str, str], factory: sessionmaker[Session], project: Project
) -> None:
    seed_incident(factory, project)
    answer = client.get(f"/api/v1/projects/web/deploys/{_deploy_id(factory)}/verdict", headers=auth)
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "pending" and "no detection pass" in body["reason"]
    assert body["measured_at"] is None and body["sessions"] == 0 and body["anomalies"] == []


def test_after_a_pass_the_bad_deploy_is_failing_everywhere_and_the_gate_refuses_it(
    client: TestClient, auth: dict[str, str], factory: sessionmaker[Session], project: Project
) -> None:
    deployed = seed_incident(factory, project)
    at = iso_utc(deployed + timedelta(minutes=4))
    assert client.post("/api/v1/projects/web/detect", params={"at": at}, headers=auth).status_code == 200
    deploy_id = _deploy_id(factory)

    by_id = client.get(f"/api/v1/projects/web/deploys/{deploy_id}/verdict", headers=auth).json()
    assert by_id["status"] == "failing" and by_id["deploy_id"] == deploy_id
    assert by_id["measured_at"] == at and by_id["minutes_since_deploy"] == 4
    (anomaly,) = by_id["anomalies"]
    assert anomaly["kind"] == "new_signature" and "map is not a function" in anomaly["title"]
    assert anomaly["evidence"] > 6.2 and "map is not a function" in by_id["reason"]
    by_release = client.get(
        "/api/v1/projects/web/releases/web@1.2.0/verdict", params={"environment": "production"}, headers=auth
    ).json()
    assert by_release == by_id

    gate = client.get(f"/api/v1/projects/web/deploys/{deploy_id}/gate", headers=auth)
    assert gate.status_code == 412 and gate.json()["status"] == "failing"
    token = auth["Authorization"].removeprefix("Bearer ")
    flagger = client.post(
        "/api/v1/projects/web/releases/web@1.2.0/gate",
        params={"environment": "production"},
        json={"name": "web", "namespace": "default", "phase": "Progressing", "metadata": {"token": token}},
    )
    assert flagger.status_code == 412 and flagger.json()["status"] == "failing"


def test_muting_the_anomaly_takes_the_deploy_out_of_failing(
    client: TestClient, auth: dict[str, str], factory: sessionmaker[Session], project: Project
) -> None:
    deployed = seed_incident(factory, project)
    client.post("/api/v1/projects/web/detect", params={"at": iso_utc(deployed + timedelta(minutes=4))}, headers=auth)
    deploy_id = _deploy_id(factory)
    anomaly_id = client.get(f"/api/v1/projects/web/deploys/{deploy_id}/verdict", headers=auth).json()["anomalies"][0]
    assert client.post(f"/api/v1/projects/web/anomalies/{anomaly_id['id']}/mute", headers=auth).status_code == 200
    after = client.get(f"/api/v1/projects/web/deploys/{deploy_id}/verdict", headers=auth).json()
    assert after["status"] == "pending" and after["anomalies"] == []  # a false alarm, said so by a person


def test_settings_and_overrides_judge_the_same_counts(
    client: TestClient, auth: dict[str, str], factory: sessionmaker[Session], project: Project
) -> None:
    deployed = seed_incident(factory, project)
    client.post("/api/v1/projects/web/detect", params={"at": iso_utc(deployed + timedelta(minutes=4))}, headers=auth)
    with transaction(factory) as session:
        set_gate_settings(session, get_project_by_slug(session, "web"), gate_min_sessions=50_000, gate_tolerance=2.0)
    deploy_id = _deploy_id(factory)
    url = f"/api/v1/projects/web/deploys/{deploy_id}/verdict"
    body = client.get(url, headers=auth).json()
    assert body["status"] == "failing"  # settings never hide an anomaly
    assert client.get(url, params={"tolerance": 0.5}, headers=auth).status_code == 422
    assert client.get(url, params={"min_sessions": 0}, headers=auth).status_code == 422


def test_refusals_say_what_is_wrong(client: TestClient, auth: dict[str, str], project: Project) -> None:
    assert client.get("/api/v1/projects/web/deploys/999/verdict").status_code == 401
    assert client.get("/api/v1/projects/web/deploys/999/verdict", headers=auth).status_code == 404
    missing = client.get("/api/v1/projects/web/releases/web@9.9.9/verdict", headers=auth)
    assert missing.status_code == 404 and "web@9.9.9" in missing.json()["detail"]
    assert client.post("/api/v1/projects/web/deploys/999/gate", json={"metadata": {"token": "nope"}}).status_code == 401
    assert client.post("/api/v1/projects/web/deploys/999/gate", json={}).status_code == 401
