"""The stand-in must refuse what Slack refuses, or the alert tests prove nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.alerts.slack_standin import SlackStandin, validate_message


def section(text: str, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": "section", "text": {"type": kind, "text": text}}


def msg(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"text": "fallback", "blocks": list(blocks)}


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


@pytest.mark.parametrize(
    "message",
    [
        msg(section("x" * 3000)),
        msg({"type": "header", "text": {"type": "plain_text", "text": "h" * 150, "emoji": True}}),
        msg({"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2000}] * 5}),
        msg({"type": "section", "fields": [{"type": "plain_text", "text": "f"}] * 10}),
        msg({"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10}),
        msg({"type": "divider"}, {"type": "divider", "block_id": "b" * 255}),
        msg(*[section("s")] * 50),
        {"text": "just text"},
        {"blocks": [section("no fallback text is still accepted")]},
        msg(
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": "https://x"}],
            }
        ),
    ],
)
def test_messages_at_the_limits_are_accepted(message: dict[str, Any]) -> None:
    assert validate_message(message) is None


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not an object", "invalid_payload"),
        ({"text": 5}, "invalid_payload"),
        ({}, "no_text"),
        ({"text": "", "blocks": []}, "no_text"),
        (msg(section("x" * 3001)), "invalid_blocks"),
        (msg(section("")), "invalid_blocks"),
        (msg(section("😀" * 1501)), "invalid_blocks"),
        (msg({"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}), "invalid_blocks"),
        (msg({"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}), "invalid_blocks"),
        (msg({"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}), "invalid_blocks"),
        (msg({"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}), "invalid_blocks"),
        (msg({"type": "section"}), "invalid_blocks"),
        (msg({"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}), "invalid_blocks"),
        (msg({"type": "context", "elements": []}), "invalid_blocks"),
        (msg(*[section("s")] * 51), "invalid_blocks"),
        (msg({"type": "divider", "text": "no text on dividers"}), "invalid_blocks"),
        (msg({"type": "marquee"}), "invalid_blocks"),
        (msg({"type": "section", "text": {"type": "mrkdwn", "text": "x", "emoji": True}}), "invalid_blocks"),
        (msg({"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}), "invalid_blocks"),
        ({"text": "x", "blocks": "not a list"}, "invalid_blocks"),
        (msg(*[section("x" * 2500)] * 5), "msg_blocks_too_long"),
    ],
)
def test_malformed_messages_are_refused_with_slacks_error(message: Any, error: str) -> None:
    assert validate_message(message) == error


def test_webhook_answers_ok_and_records_the_payload(slack: SlackStandin) -> None:
    response = httpx.post(slack.webhook_url, json={"text": "hello"})

    assert (response.status_code, response.text) == (200, "ok")
    assert slack.accepted_payloads() == [{"text": "hello"}]


def test_webhook_accepts_a_form_encoded_payload(slack: SlackStandin) -> None:
    response = httpx.post(slack.webhook_url, data={"payload": json.dumps({"text": "hello"})})

    assert (response.status_code, response.text) == (200, "ok")


def test_webhook_refuses_bad_bodies_with_400(slack: SlackStandin) -> None:
    not_json = httpx.post(slack.webhook_url, content=b"{nope", headers={"Content-Type": "application/json"})
    no_text = httpx.post(slack.webhook_url, json={"username": "x"})
    bad_blocks = httpx.post(slack.webhook_url, json=msg(section("x" * 3001)))

    assert (not_json.status_code, not_json.text) == (400, "invalid_payload")
    assert (no_text.status_code, no_text.text) == (400, "no_text")
    assert (bad_blocks.status_code, bad_blocks.text) == (400, "invalid_blocks")
    assert slack.accepted_payloads() == []


def test_faults_are_served_in_order_then_normal_answers_resume(slack: SlackStandin) -> None:
    slack.rate_limit(1, retry_after=7)
    slack.outage(1, status=500)

    first, second, third = (httpx.post(slack.webhook_url, json={"text": "x"}) for _ in range(3))

    assert (first.status_code, first.headers["retry-after"]) == (429, "7")
    assert (second.status_code, second.text) == (500, "rollup_error")
    assert (third.status_code, third.text) == (200, "ok")


def test_web_api_checks_the_bearer_token(slack: SlackStandin) -> None:
    url = slack.api_base_url + "chat.postMessage"
    body = {"channel": slack.channel, "text": "x"}

    missing = httpx.post(url, json=body).json()
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer xoxb-nope"}).json()
    right = httpx.post(url, json=body, headers={"Authorization": f"Bearer {slack.token}"}).json()

    assert missing == {"ok": False, "error": "not_authed"}
    assert wrong == {"ok": False, "error": "invalid_auth"}
    assert right["ok"] is True and right["channel"] == slack.channel and right["ts"]


def test_web_api_refuses_unknown_channel_long_text_and_bad_blocks(slack: SlackStandin) -> None:
    url = slack.api_base_url + "chat.postMessage"
    auth = {"Authorization": f"Bearer {slack.token}"}

    def error(body: dict[str, Any]) -> str:
        return str(httpx.post(url, json=body, headers=auth).json()["error"])

    assert error({"channel": "C0OTHER", "text": "x"}) == "channel_not_found"
    assert error({"channel": slack.channel, "text": "x" * 40_001}) == "msg_too_long"
    assert error({"channel": slack.channel, **msg(section(""))}) == "invalid_blocks"
    assert error({"channel": slack.channel}) == "no_text"


def test_web_api_rate_limit_answers_429_with_retry_after(slack: SlackStandin) -> None:
    slack.rate_limit(1, retry_after=4)

    response = httpx.post(slack.api_base_url + "chat.postMessage", json={"channel": slack.channel, "text": "x"})

    assert response.status_code == 429
    assert response.headers["retry-after"] == "4"
    assert response.json() == {"ok": False, "error": "ratelimited"}


def test_web_api_unknown_method_is_404(slack: SlackStandin) -> None:
    response = httpx.post(slack.api_base_url + "chat.delete", json={})

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_method"
