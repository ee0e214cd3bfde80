"""Shared helpers for the intake tests: reading the real-client fixtures (`fixtures_dir` is in tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from detector.intake.envelope import parse_envelope


@pytest.fixture(scope="session")
def real_event_payloads(fixtures_dir: Path) -> dict[str, dict[str, Any]]:
    """The event item payloads of real-clients/browser-NN-event.envelope, keyed by 'browser-03' etc."""
    payloads: dict[str, dict[str, Any]] = {}
    for path in sorted((fixtures_dir / "real-clients").glob("browser-*-event.envelope")):
        envelope = parse_envelope(path.read_bytes())
        (item,) = envelope.items_of_type("event")
        payloads[path.name.removesuffix("-event.envelope")] = json.loads(item.payload)
    return payloads
