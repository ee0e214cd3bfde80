"""The outbound webhook of a failing deploy: the verdict as JSON, signed with the project's secret.

`X-Detector-Signature-256: sha256=<hex>` is the HMAC-SHA256 of the exact body with the secret (as GitHub
signs its webhooks), so a receiver that rolls back can check the request came from us. One call makes one
request, with a timeout and no redirects; the outbox (`detector.verdict_hooks`) owns the retries. The
result is classified like a Slack webhook's (`alerts.slack.SendResult`): 2xx done, 429 or 5xx or a timeout
worth another try, any other 4xx or a redirect permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from detector.alerts.slack import SendResult, _read_bounded, _webhook_result

SIGNATURE_HEADER = "X-Detector-Signature-256"
EVENT_HEADER = "X-Detector-Event"


def signature_for(body: bytes, secret: str) -> str:
    """The header's value for `body`: `sha256=` and the hex HMAC-SHA256 with `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload_body(payload: dict[str, Any]) -> bytes:
    """The bytes that are signed and sent (compact, keys sorted: the same payload signs the same)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def post_verdict(url: str, secret: str | None, payload: dict[str, Any], *, timeout: float) -> SendResult:
    """One POST of `payload` to `url`; never raises for what the receiver or the network does."""
    body = payload_body(payload)
    headers = {"Content-Type": "application/json", EVENT_HEADER: "deploy.failing"}
    if secret:
        headers[SIGNATURE_HEADER] = signature_for(body, secret)
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            return _webhook_result(response.status_code, response.headers, _read_bounded(response))
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
        return SendResult(ok=False, error=f"bad_webhook_url: {type(error).__name__}", permanent=True)
    except httpx.TransportError as error:
        return SendResult(ok=False, error=f"{type(error).__name__}: {error}")
