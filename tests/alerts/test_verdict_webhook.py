"""The failing-deploy webhook's sender: signed like GitHub's webhooks, one request with a timeout, and the
outcome classified for the outbox (done, try again, or never)."""

from __future__ import annotations

import hashlib
import hmac
import socket

from detector.alerts.verdict_webhook import payload_body, post_verdict, signature_for
from tests.support.webhook_receiver import WebhookReceiver

PAYLOAD = {"status": "failing", "release": "web@1.2.0", "reason": "new error: TypeError."}


def test_the_signature_is_the_hmac_sha256_of_the_exact_body() -> None:
    body = payload_body(PAYLOAD)
    assert signature_for(body, "s3cret") == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert payload_body(dict(reversed(PAYLOAD.items()))) == body  # the same payload signs the same


def test_a_receiver_checks_the_signature_and_reads_the_verdict() -> None:
    with WebhookReceiver("s3cret") as receiver:
        result = post_verdict(receiver.url, "s3cret", PAYLOAD, timeout=5)
    assert result.ok
    (got,) = receiver.received
    assert got.signed and got.payload == PAYLOAD
    assert got.headers["X-Detector-Event"] == "deploy.failing"


def test_outcomes_are_classified_for_the_outbox() -> None:
    with WebhookReceiver("s3cret", statuses=[503, 429, 404]) as receiver:
        outage = post_verdict(receiver.url, "s3cret", PAYLOAD, timeout=5)
        limited = post_verdict(receiver.url, "s3cret", PAYLOAD, timeout=5)
        refused = post_verdict(receiver.url, "s3cret", PAYLOAD, timeout=5)
        wrong_key = post_verdict(receiver.url, "not-the-secret", PAYLOAD, timeout=5)
    assert not outage.ok and not outage.permanent  # worth another try
    assert not limited.ok and not limited.permanent
    assert refused.permanent and wrong_key.permanent  # 4xx: the request itself is wrong
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    unreachable = post_verdict(closed, "s3cret", PAYLOAD, timeout=1)
    assert not unreachable.ok and not unreachable.permanent and "ConnectError" in (unreachable.error or "")
    assert post_verdict("ftp://example.com/x", None, PAYLOAD, timeout=1).permanent
