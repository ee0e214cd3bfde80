"""The ASGI application `detector serve` runs, built from the environment.

`detector serve` names it by import string (`api.server:app_from_environment`, a uvicorn factory), so
the `detector` package never imports `api/`: the web layer depends on the library, not the reverse.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp

from api.app import create_app
from api.routes.intake import with_fast_intake
from detector.config import Settings
from detector.runtime import build_worker

IN_PROCESS_WORKER = "DETECTOR_SERVE_WORKER_THREAD"
"""Set to 1 by `detector serve --worker-mode thread`: run the worker in a thread of this process."""


def app_from_environment() -> ASGIApp:
    settings = Settings()
    in_process = os.environ.get(IN_PROCESS_WORKER) == "1"
    # intake requests are answered in front of the app's middleware (same answers, less work)
    return with_fast_intake(create_app(settings, worker_factory=build_worker if in_process else None))
