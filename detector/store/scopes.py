"""What an API token may do: its scopes, stored as one space-separated text (as OAuth writes them)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from detector.errors import InvalidInput


class TokenScope(StrEnum):
    INGEST = "ingest"
    """Upload source maps and artifact bundles (what a build step sends for symbolication)."""
    READ = "read"
    """Read the native API: projects, signatures, events, anomalies, deploys, verdicts, releases."""
    DEPLOY = "deploy"
    """Record releases, commits and deploys (sentry-cli, `detector deploy`), and read verdicts."""
    ADMIN = "admin"
    """Everything, including changing an anomaly's state and running a detection pass."""


ALL_SCOPES: frozenset[TokenScope] = frozenset(TokenScope)
_NAMES = frozenset(scope.value for scope in TokenScope)
ALL_SCOPES_TEXT = " ".join(TokenScope)
"""The stored form of every scope: what tokens made before scopes existed hold (migration 0008)."""


def parse_scopes(names: Iterable[str]) -> frozenset[TokenScope]:
    """The scopes named (any case, blanks ignored); InvalidInput names an unknown one."""
    scopes: set[TokenScope] = set()
    for name in names:
        name = name.strip().lower()
        if not name:
            continue
        try:
            scopes.add(TokenScope(name))
        except ValueError:
            known = ", ".join(TokenScope)
            raise InvalidInput(f"unknown token scope {name!r}: the scopes are {known}") from None
    return frozenset(scopes)


def scopes_as_text(scopes: Iterable[TokenScope]) -> str:
    """The stored form, in `TokenScope` order."""
    chosen = set(scopes)
    return " ".join(scope for scope in TokenScope if scope in chosen)


def scopes_from_text(text: str) -> frozenset[TokenScope]:
    """The stored form read back; names a later version no longer knows are ignored, never widened."""
    return frozenset(TokenScope(name) for name in text.split() if name in _NAMES)


def allows(held: frozenset[TokenScope], accepted: Iterable[TokenScope]) -> bool:
    """Whether a token holding `held` may use a route that accepts any of `accepted` (admin may use all)."""
    return TokenScope.ADMIN in held or any(scope in held for scope in accepted)
