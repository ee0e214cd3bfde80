"""Helpers the intake tests import (kept out of conftest.py so the import is unambiguous)."""

from __future__ import annotations

import json
from typing import Any


def capture_python_event(source: str, filename: str, function: str, argument: Any) -> dict[str, Any]:
    """The event sentry-sdk (the real Python SDK) sends for the exception ``function(argument)`` raises.

    ``source`` is compiled as ``filename`` so its frames look like application code; the SDK's transport
    is replaced by one that keeps the event item instead of sending it.
    """
    import sentry_sdk
    from sentry_sdk.transport import Transport

    sent: list[bytes] = []

    class KeepTransport(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            sent.extend(item.get_bytes() for item in envelope.items if item.type == "event")

    client = sentry_sdk.Client(
        dsn="http://k@localhost/1", transport=KeepTransport, release="api@1.0.0", default_integrations=False
    )
    namespace: dict[str, Any] = {"__name__": filename.removesuffix(".py").replace("/", ".")}
    exec(compile(source, filename, "exec"), namespace)
    with sentry_sdk.isolation_scope() as scope:
        scope.set_client(client)
        try:
            namespace[function](argument)
        except Exception as exc:  # the test wants whatever the snippet raises, reported by the SDK
            sentry_sdk.capture_exception(exc)
    client.flush()
    (payload,) = sent
    return json.loads(payload)
