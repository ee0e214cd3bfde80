"""The FastAPI app, built by `create_app(settings)` so tests can point it at any database."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from api.errors import install_error_handlers
from api.routes import anomalies, deploys, intake, projects, sentry_artifacts, sentry_releases, webhooks
from api.state import AppState, ProjectKeyCache, RateLimiter, TokenCache
from detector.config import Settings
from detector.metrics import Metrics, exposition, refresh_database_gauges
from detector.store.db import make_engine, make_sessionmaker
from detector.store.queue import queue_depth
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
        limiter=RateLimiter(settings.default_rate_limit_per_minute),
        metrics=Metrics(),
    )


def create_app(settings: Settings, *, worker_factory: Any = None) -> FastAPI:
    """The API. With `worker_factory(state) -> Worker`, a worker runs in a thread beside it."""
    state = build_state(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.writer.start()
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
            stop.set()
            if thread is not None:
                thread.join(timeout=30)
            state.engine.dispose()

    app = FastAPI(
        title="Deploy-aware error anomaly detector",
        version="0.1.0",
        description="Sentry-compatible intake, deploys, signatures, anomalies with suspect commits.",
        lifespan=lifespan,
    )
    app.state.detector = state
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "PUT", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["Retry-After", "X-Sentry-Rate-Limits"],
    )
    install_error_handlers(app)
    app.include_router(intake.router)
    app.include_router(projects.router)
    app.include_router(sentry_artifacts.router)
    app.include_router(anomalies.router)
    app.include_router(sentry_releases.router)
    app.include_router(deploys.router)
    app.include_router(webhooks.router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        try:
            with state.factory() as session:
                session.execute(text("SELECT 1"))
                depth = queue_depth(session)
        except Exception as exc:  # a health check reports, it does not raise
            return JSONResponse({"status": "unavailable", "detail": str(exc)[:200]}, status_code=503)
        state.metrics.queue_depth.set(depth)
        return JSONResponse({"status": "ok", "queue_depth": depth})

    @app.get("/metrics", tags=["ops"])
    def metrics() -> Response:
        with state.factory() as session:
            refresh_database_gauges(session, state.metrics)
        return Response(exposition(state.metrics), media_type=CONTENT_TYPE_LATEST)

    return app
