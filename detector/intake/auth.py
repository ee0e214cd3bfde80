"""Find the project key (and project id) a Sentry SDK request carries.

SDKs authenticate in one of three places: the ``sentry_key`` query parameter (browsers, which cannot set
custom headers on ``sendBeacon``/no-cors requests), the ``X-Sentry-Auth`` header (server SDKs), or the
``dsn`` in the envelope header (tunnelled envelopes). The public key is an identifier, not a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["parse_auth_header", "project_id_from_dsn", "public_key_from_dsn", "public_key_from_request"]


def parse_auth_header(value: str) -> dict[str, str]:
    """Parse ``Sentry sentry_key=abc, sentry_version=7, sentry_client=x/1.0`` into a dict.

    The ``Sentry`` scheme word is optional (old clients omit it); keys are lower-cased, values stripped;
    pairs without ``=`` are ignored.
    """
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() == "sentry":
        text = rest
    pairs: dict[str, str] = {}
    for part in text.split(","):
        name, sep, val = part.partition("=")
        if sep:
            pairs[name.strip().lower()] = val.strip()
    return pairs


def public_key_from_dsn(dsn: str) -> str | None:
    """The public key (the user part) of a DSN such as ``https://KEY@o1.ingest.sentry.io/42``, else None."""
    try:
        username = urlsplit(dsn.strip()).username
    except ValueError:
        return None
    return username or None


def project_id_from_dsn(dsn: str) -> int | None:
    """The project id (the last path segment) of a DSN such as ``http://KEY@host/prefix/42``, else None."""
    try:
        path = urlsplit(dsn.strip()).path
    except ValueError:
        return None
    last = path.rstrip("/").rpartition("/")[2]
    return int(last) if last.isascii() and last.isdigit() else None


def public_key_from_request(
    query: Mapping[str, str], x_sentry_auth: str | None, envelope_dsn: str | None
) -> str | None:
    """The public key of a request, or None when it carries none.

    Looked up in the order relay uses: the ``X-Sentry-Auth`` header, then the ``sentry_key`` query
    parameter, then the envelope header's ``dsn``. Empty values count as absent.
    """
    if x_sentry_auth:
        key = parse_auth_header(x_sentry_auth).get("sentry_key")
        if key:
            return key
    key = query.get("sentry_key")
    if key and key.strip():
        return key.strip()
    if envelope_dsn:
        return public_key_from_dsn(envelope_dsn)
    return None
