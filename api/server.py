"""The ASGI application `detector serve` runs, built from the environment.

`detector serve` names it by import string (`api.server:app_from_environment`, a uvicorn factory), so
the `detector` package never imports `api/`: the web layer depends on the library, not the reverse.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.app import create_app
from api.routes.intake import with_fast_intake
from detector.config import Settings
from detector.runtime import build_worker, freeze_startup_objects

IN_PROCESS_WORKER = "DETECTOR_SERVE_WORKER_THREAD"
"""Set to 1 by `detector serve --worker-mode thread`: run the worker in a thread of this process."""


def app_from_environment() -> ASGIApp:
    settings = Settings()
    in_process = os.environ.get(IN_PROCESS_WORKER) == "1"
    app = create_app(settings, worker_factory=build_worker if in_process else None)
    # Intake requests are answered in front of the app's middleware (same answers, less work). Every
    # other request goes through uvicorn's proxy-headers middleware, set up as uvicorn would
    # (`detector serve` turns uvicorn's own off): intake does not use the client address or scheme,
    # and the middleware cost it a few us per request.
    trusted = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
    served = with_fast_intake(app, ProxyHeadersMiddleware(app, trusted_hosts=trusted))
    freeze_startup_objects()
    return served
