"""Wiring: builds a Worker with every job the settings ask for (used by `serve`, `worker`, `demo`)."""

from __future__ import annotations

from typing import Any

from detector.config import Settings
from detector.metrics import Metrics
from detector.store.db import make_engine, make_sessionmaker
from detector.worker import Worker


def build_worker_from_settings(settings: Settings, metrics: Metrics, factory: Any = None) -> Worker:
    factory = factory or make_sessionmaker(make_engine(settings.database_url))
    return Worker(settings=settings, factory=factory, metrics=metrics)


def build_worker(state: Any) -> Worker:
    """The in-process worker of `detector serve`, sharing the API's engine and metrics."""
    return build_worker_from_settings(state.settings, state.metrics, state.factory)
