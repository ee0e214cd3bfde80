"""Shared helpers for the intake tests: where the real-client fixtures live and how to read them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from detector.intake.envelope import parse_envelope


def fixtures_root() -> Path:
    """The shared fixtures folder: ``$DETECTOR_FIXTURES`` or ``../shared/fixtures`` next to the checkout."""
    env = os.environ.get("DETECTOR_FIXTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    root = fixtures_root()
    if not root.is_dir():
        pytest.skip(f"shared fixtures not found at {root}")
    return root


@pytest.fixture(scope="session")
def real_event_payloads(fixtures_dir: Path) -> dict[str, dict[str, Any]]:
    """The event item payloads of real-clients/browser-NN-event.envelope, keyed by 'browser-03' etc."""
    payloads: dict[str, dict[str, Any]] = {}
    for path in sorted((fixtures_dir / "real-clients").glob("browser-*-event.envelope")):
        envelope = parse_envelope(path.read_bytes())
        (item,) = envelope.items_of_type("event")
        payloads[path.name.removesuffix("-event.envelope")] = json.loads(item.payload)
    return payloads
