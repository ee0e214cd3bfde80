from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from detector.alerts.blocks import alert_blocks, update_blocks
from detector.alerts.slack import BotSender, SendResult, WebhookSender, sender_for
from tests.alerts.alert_examples import extreme_content, seed_incident_content
from tests.alerts.slack_standin import SlackStandin


class FakeSleep:
    """Records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def webhook(slack: SlackStandin, sleep: FakeSleep, **options: float) -> WebhookSender:
    return WebhookSender(slack.webhook_url, sleep=sleep, **options)  # type: ignore[arg-type]


def bot(slack: SlackStandin, sleep: FakeSleep, token: str | None = None, **options: float) -> BotSender:
    return BotSender(token or slack.token, slack.channel, base_url=slack.api_base_url, sleep=sleep, **options)  # type: ignore[arg-type]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/T/B/x"


# ---- incoming webhook ------------------------------------------------------------------------------


def test_webhook_posts_the_seed_alert_and_slack_accepts_it(slack: SlackStandin, sleep: FakeSleep) -> None:
    message = alert_blocks(seed_incident_content())

    result = webhook(slack, sleep).post(message)

    assert result == SendResult(ok=True)
    assert slack.accepted_payloads() == [message]
    assert slack.requests[0].headers["content-type"] == "application/json"
    assert sleep.waits == []


def test_webhook_posts_extreme_content_and_slack_accepts_it(slack: SlackStandin, sleep: FakeSleep) -> None:
    result = webhook(slack, sleep).post(alert_blocks(extreme_content(suspect_count=20)))

    assert result.ok, result.error


def test_webhook_429_waits_retry_after_then_succeeds(slack: SlackStandin, sleep: FakeSleep) -> None:
    slack.rate_limit(2, retry_after=3)

    result = webhook(slack, sleep).post(alert_blocks(seed_incident_content()))

    assert result.ok
    assert sleep.waits == [3.0, 3.0]
    assert [r.status for r in slack.requests] == [429, 429, 200]


def test_webhook_429_past_the_wait_budget_goes_back_to_the_caller(slack: SlackStandin, sleep: FakeSleep) -> None:
    slack.rate_limit(1, retry_after=60)

    result = webhook(slack, sleep, max_wait=10.0).post(alert_blocks(seed_incident_content()))

    assert not result.ok and not result.permanent
    assert result.retry_after == 60.0
    assert sleep.waits == []
    assert len(slack.requests) == 1


def test_webhook_outage_is_not_permanent_and_backs_off(slack: SlackStandin, sleep: FakeSleep) -> None:
    slack.outage(5, status=503)

    result = webhook(slack, sleep).post(alert_blocks(seed_incident_content()))

    assert not result.ok
    assert not result.permanent
    assert result.retry_after is None
    assert result.error == "http_503: service_unavailable"
    assert sleep.waits == [0.5, 1.0]
    assert len(slack.requests) == 3


def test_webhook_invalid_blocks_is_permanent_after_one_request(slack: SlackStandin, sleep: FakeSleep) -> None:
    message = {"text": "x", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}

    result = webhook(slack, sleep).post(message)

    assert result == SendResult(ok=False, error="invalid_blocks", permanent=True)
    assert len(slack.requests) == 1 and sleep.waits == []


def test_webhook_unknown_hook_is_permanent(slack: SlackStandin, sleep: FakeSleep) -> None:
    result = WebhookSender(slack.base_url + "/services/T/B/revoked", sleep=sleep).post({"text": "hi"})

    assert result == SendResult(ok=False, error="no_service", permanent=True)


def test_webhook_redirect_is_not_followed(slack: SlackStandin, sleep: FakeSleep) -> None:
    slack.redirect(1)

    result = webhook(slack, sleep).post({"text": "hi"})

    assert not result.ok and result.permanent
    assert result.error == "redirect_refused: http_302"
    assert [(r.method, r.status) for r in slack.requests] == [("POST", 302)]


def test_webhook_timeout_is_bounded_and_not_permanent(slack: SlackStandin, sleep: FakeSleep) -> None:
    slack.slow(1, seconds=8.0)
    started = time.monotonic()

    result = webhook(slack, sleep, timeout=0.2, max_attempts=1).post({"text": "hi"})

    # cut off by the timeout, not answered: far sooner than the stand-in's 8 s (slack for a loaded machine)
    assert time.monotonic() - started < 6.0
    assert not result.ok and not result.permanent
    assert result.error is not None and result.error.startswith("ReadTimeout")


def test_webhook_connection_refused_is_not_permanent(sleep: FakeSleep) -> None:
    result = WebhookSender(closed_port_url(), sleep=sleep).post({"text": "hi"})

    assert not result.ok and not result.permanent
    assert result.error is not None and result.error.startswith("ConnectError")
    assert sleep.waits == [0.5, 1.0]


def test_webhook_bad_url_is_permanent(sleep: FakeSleep) -> None:
    result = WebhookSender("ftp://hooks.example/services/x", sleep=sleep).post({"text": "hi"})

    assert result.permanent and not result.ok
    assert "hooks.example" not in (result.error or "")


# ---- bot token, Web API ----------------------------------------------------------------------------


def test_bot_posts_then_replies_in_the_thread_then_updates(slack: SlackStandin, sleep: FakeSleep) -> None:
    sender = bot(slack, sleep)
    first = seed_incident_content()
    grown = seed_incident_content(sessions_affected=120, users=40)

    posted = sender.post(alert_blocks(first))
    assert posted.ok and posted.ts and posted.channel == slack.channel

    replied = sender.reply(posted.ts, update_blocks(grown, previous=first))
    assert replied.ok and replied.ts != posted.ts

    updated = sender.update(posted.ts, alert_blocks(seed_incident_content(state="resolved")))
    assert updated.ok and updated.ts == posted.ts

    parent, reply = slack.messages
    assert parent.thread_ts is None and parent.updates == 1
    assert slack.replies(posted.ts) == [reply]
    assert "*Grown:*" in reply.blocks[0]["text"]["text"]  # type: ignore[index]
    assert parent.blocks[0]["text"]["text"].startswith(":white_check_mark: Resolved:")  # type: ignore[index]
    assert all(r.headers["authorization"] == f"Bearer {slack.token}" for r in slack.requests)


def test_bot_with_a_wrong_token_fails_permanently(slack: SlackStandin, sleep: FakeSleep) -> None:
    result = bot(slack, sleep, token="xoxb-wrong").post({"text": "hi"})

    assert result == SendResult(ok=False, error="invalid_auth", permanent=True)
    assert len(slack.requests) == 1


def test_bot_invalid_blocks_is_permanent(slack: SlackStandin, sleep: FakeSleep) -> None:
    result = bot(slack, sleep).post({"text": "x", "blocks": [{"type": "section"}]})

    assert result == SendResult(ok=False, error="invalid_blocks", permanent=True)


def test_bot_update_of_an_unknown_message_is_permanent(slack: SlackStandin, sleep: FakeSleep) -> None:
    result = bot(slack, sleep).update("1.000001", {"text": "hi"})

    assert result == SendResult(ok=False, error="message_not_found", permanent=True)


def test_bot_429_waits_retry_after(slack: SlackStandin, sleep: FakeSleep) -> None:
    slack.rate_limit(1, retry_after=2)

    result = bot(slack, sleep).post({"text": "hi"})

    assert result.ok and result.ts
    assert sleep.waits == [2.0]


def test_bot_outage_is_not_permanent(slack: SlackStandin, sleep: FakeSleep) -> None:
    slack.outage(3, status=500)

    result = bot(slack, sleep).post({"text": "hi"})

    assert not result.ok and not result.permanent
    assert result.error == "http_500: rollup_error"
    assert sleep.waits == [0.5, 1.0]


def test_bot_redirect_is_not_followed_and_the_token_stays_home(slack: SlackStandin, sleep: FakeSleep) -> None:
    slack.redirect(1, status=302)

    result = bot(slack, sleep).post({"text": "hi"})

    assert not result.ok and result.permanent
    assert result.error == "redirect_refused: http_302"
    assert [r.method for r in slack.requests] == ["POST"]


def test_bot_timeout_and_connection_errors_are_not_permanent(slack: SlackStandin, sleep: FakeSleep) -> None:
    slack.slow(1, seconds=8.0)
    started = time.monotonic()

    timed_out = bot(slack, sleep, timeout=0.2, max_attempts=1).post({"text": "hi"})
    refused = BotSender("xoxb-x", "C1", base_url=closed_port_url(), sleep=sleep, max_attempts=1).post({"text": "hi"})

    # cut off by the timeout, not answered: far sooner than the stand-in's 8 s (slack for a loaded machine)
    assert time.monotonic() - started < 6.0
    assert not timed_out.ok and not timed_out.permanent
    assert not refused.ok and not refused.permanent
    assert "xoxb" not in (timed_out.error or "") + (refused.error or "")


def test_sender_for_prefers_the_bot_and_turns_alerts_off_without_settings() -> None:
    both = sender_for(webhook_url="http://hook", bot_token="xoxb-1", channel="C1", timeout=2.0)
    webhook_only = sender_for(webhook_url="http://hook", bot_token="xoxb-1", channel=None)
    nothing = sender_for(webhook_url=None, bot_token=None, channel=None)

    assert isinstance(both, BotSender) and both.timeout == 2.0
    assert isinstance(webhook_only, WebhookSender) and webhook_only.url == "http://hook"
    assert nothing is None


@pytest.mark.parametrize("header", ["nan", "inf", "soon", "-5"])
def test_unreadable_retry_after_falls_back_to_backoff(slack: SlackStandin, sleep: FakeSleep, header: str) -> None:
    slack.rate_limit(1, retry_after=header)

    result = webhook(slack, sleep).post({"text": "hi"})

    assert result.ok
    assert sleep.waits == ([0.0] if header == "-5" else [0.5])
