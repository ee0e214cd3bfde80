"""The FastAPI app, built by `create_app(settings)` so tests can point it at any database."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from swagger_ui_bundle import swagger_ui_path

from api.errors import install_error_handlers
from api.routes import anomalies, deploys, intake, projects, sentry_artifacts, sentry_releases, verdicts, webhooks
from api.state import AppState, ProjectKeyCache, QueueBound, RateLimiter, TokenCache
from detector.config import Settings
from detector.health import check_health
from detector.metrics import Metrics, exposition, refresh_database_gauges
from detector.store.db import make_engine, make_sessionmaker
from detector.store.writer import GroupCommitWriter
from detector.worker import Worker

log = logging.getLogger(__name__)


def build_state(settings: Settings) -> AppState:
    engine = make_engine(settings.database_url)
    factory = make_sessionmaker(engine)
    return AppState(
        settings=settings,
        engine=engine,
        factory=factory,
        writer=GroupCommitWriter(factory),
        keys=ProjectKeyCache(factory),
        tokens=TokenCache(factory),
        limiter=RateLimiter(factory, settings.default_rate_limit_per_minute),
        metrics=Metrics(),
        queue_bound=QueueBound(
            factory,
            max_items=settings.queue_max_items,
            max_bytes=settings.queue_max_bytes,
            retry_after=settings.queue_full_retry_after_seconds,
            refresh_seconds=settings.queue_bound_refresh_seconds,
        ),
    )


DOCS_ASSETS = "/docs/assets"


def _serve_docs_offline(app: FastAPI) -> None:
    """Swagger UI at /docs with its JavaScript and CSS served by this app (the swagger-ui-bundle package),
    not from a CDN: a self-hosted install behind a firewall still shows the API."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )


def _recent_intake_failure(state: AppState) -> str | None:
    """Why intake's last commit failed, if none has succeeded since and it failed recently enough that
    intake traffic would have tried again (`health_intake_failure_seconds`)."""
    failure = state.writer.last_failure
    if failure is None or time.monotonic() - failure[0] > state.settings.health_intake_failure_seconds:
        return None
    return failure[1]


def create_app(settings: Settings, *, worker_factory: Any = None) -> FastAPI:
    """The API. With `worker_factory(state) -> Worker`, a worker runs in a thread beside it."""
    state = build_state(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.writer.start()
        state.queue_bound.start()
        stop = threading.Event()
        thread: threading.Thread | None = None
        if worker_factory is not None:
            worker: Worker = worker_factory(state)
            thread = threading.Thread(target=worker.run, args=(stop,), name="worker", daemon=True)
            thread.start()
        try:
            yield
        finally:
            state.writer.stop()
            state.queue_bound.stop()
            stop.set()
            if thread is not None:
                thread.join(timeout=30)
            state.engine.dispose()

    app = FastAPI(
        title="Deploy-aware error anomaly detector",
        version="0.1.0",
        description="Sentry-compatible intake, deploys, signatures, anomalies with suspect commits.",
        lifespan=lifespan,
        # /docs is served below from swagger-ui-bundle's files, so it works without internet access
        docs_url=None,
        redoc_url=None,
    )
    app.state.detector = state
    _serve_docs_offline(app)
    # No CORS middleware: only the intake routes answer CORS (api/cors.py), the query API none.
    install_error_handlers(app)
    app.include_router(intake.router)
    app.include_router(projects.router)
    app.include_router(sentry_artifacts.router)
    app.include_router(anomalies.router)
    app.include_router(sentry_releases.router)
    app.include_router(deploys.router)
    app.include_router(verdicts.router)
    app.include_router(webhooks.router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        """200 when events sent now will be stored and digested; 503 with the reasons when not (see
        `detector.health` and docs/OPERATIONS.md)."""
        health = check_health(state.factory, state.settings, intake_failure=_recent_intake_failure(state))
        if health.queue_depth is not None:
            state.metrics.queue_depth.set(health.queue_depth)
        return JSONResponse(health.as_dict(), status_code=200 if health.ok else 503)

    @app.get("/metrics", tags=["ops"])
    def metrics() -> Response:
        with state.factory() as session:
            refresh_database_gauges(session, state.metrics)
        return Response(exposition(state.metrics), media_type=CONTENT_TYPE_LATEST)

    return app
