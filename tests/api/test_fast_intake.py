"""Intake answered in front of the app (`with_fast_intake`, as `detector serve` runs it)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.app import create_app
from api.routes.intake import FastIntake, with_fast_intake
from detector.config import Settings
from detector.store.models import Project
from tests.api.test_intake import envelope_url, event_envelope, minimal_event


@pytest.fixture
def fast(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(with_fast_intake(app, ProxyHeadersMiddleware(app, trusted_hosts="*"))) as client:
        yield client


def test_a_repeated_header_counts_once_first_as_listed(fast: TestClient, project: Project) -> None:
    body = gzip.compress(event_envelope(minimal_event("b" * 32)))
    headers = [("Content-Encoding", "gzip"), ("Content-Encoding", "br")]
    response = fast.post(envelope_url(project), content=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"id": "b" * 32}


def test_other_requests_go_through_the_rest_of_the_stack(fast: TestClient, project: Project) -> None:
    assert fast.get("/healthz", headers={"X-Forwarded-Proto": "https"}).status_code == 200
    preflight = fast.options(
        envelope_url(project), headers={"Origin": "http://app.test", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"


def test_intake_metrics_count_by_label(fast: TestClient, project: Project, settings: Settings) -> None:
    for i in range(3):
        assert fast.post(envelope_url(project), content=event_envelope(minimal_event(f"{i:032x}"))).status_code == 200
    assert fast.post(envelope_url(project), content=b"not an envelope").status_code == 400
    assert isinstance(fast.app, FastIntake)
    text = generate_latest(fast.app.app.state.detector.metrics.registry).decode()
    assert 'detector_intake_items_total{item_type="event"} 3.0' in text
    assert 'detector_intake_rejected_total{status="400"} 1.0' in text
    assert 'item_type="session"' not in text  # a series appears with its first item, as labels() made it
