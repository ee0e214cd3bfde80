from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from detector.alerts.blocks import alert_blocks, slack_len, update_blocks, verdict_blocks
from tests.alerts.alert_examples import extreme_content, seed_incident_content
from tests.alerts.slack_standin import block_kit_problem, validate_message


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    found = []
    for block in message["blocks"]:
        if block["type"] == "section":
            found.append(block["text"]["text"])
        if block["type"] == "context":
            found += [element["text"] for element in block["elements"]]
    return found


def all_text(message: dict[str, Any]) -> str:
    return "\n".join(mrkdwn_texts(message))


def assert_valid(message: dict[str, Any]) -> None:
    assert validate_message(message) is None, block_kit_problem(message)


def test_seed_incident_is_valid_block_kit_with_fallback_text() -> None:
    message = alert_blocks(seed_incident_content())

    assert_valid(message)
    assert "TypeError: &lt;x&gt;.map is not a function" in message["text"]
    assert "37 sessions affected" in message["text"]


def test_header_says_what_broke_in_plain_text() -> None:
    header = alert_blocks(seed_incident_content())["blocks"][0]

    assert header["type"] == "header"
    assert header["text"]["type"] == "plain_text"
    # plain_text is shown literally, so it is not escaped.
    assert header["text"]["text"].endswith("TypeError: <x>.map is not a function")


def test_impact_shows_sessions_users_rate_against_baseline_and_segments() -> None:
    text = all_text(alert_blocks(seed_incident_content()))

    assert "*New error signature* in *web*" in text
    assert "37 sessions and 12 users affected" in text
    assert "2.1% of sessions (baseline 0.0%)" in text
    assert "412 events" in text
    assert "*Where:* 92% on /billing, all browsers" in text


def test_deploy_line_names_release_environment_and_delay() -> None:
    text = all_text(alert_blocks(seed_incident_content()))

    assert "*Deploy:* `web@1.2.0` to `production` at 2026-11-27 14:02 UTC" in text
    assert "caught 2 min after the deploy" in text


def test_spike_without_deploy_says_so() -> None:
    content = seed_incident_content(kind="spike", deploy=None, minutes_after_deploy=None)

    text = all_text(alert_blocks(content))

    assert "*Error spike without a deploy*" in text
    assert "not linked to a deploy" in text
    assert "caught" not in text


def test_suspect_shows_short_sha_first_line_author_and_evidence() -> None:
    text = all_text(alert_blocks(seed_incident_content()))

    first = "*1.* `4be2f1c` Add instrumentation to getEntitlements · Ada Lovelace &lt;ada@example.com&gt;"
    assert first in text
    assert "Wraps the response" not in text
    assert "• It changed getEntitlements(), which the failing frame renderPaidFeatures calls." in text
    assert "*2.* `9c0d1e2` Bump copy on the billing page · Grace Hopper · score 0.12" in text


def test_only_the_top_three_suspects_by_score_are_shown() -> None:
    suspects = [
        {"sha": f"{i:07x}aaaa", "message": f"commit {i}", "author": "a", "score": s, "evidence": []}
        for i, s in enumerate([0.1, 0.9, 0.5, 0.7, 0.2])
    ]

    text = all_text(alert_blocks(seed_incident_content(suspects=suspects)))

    shown = re.findall(r"\*\d\.\* `[0-9a-f]+` commit (\d)", text)
    assert shown == ["1", "3", "2"]
    assert "(top 3 of 5; all of them in the API)" in text


def test_links_point_at_the_anomaly_in_the_api_and_ui() -> None:
    text = all_text(alert_blocks(seed_incident_content()))

    assert "<http://127.0.0.1:8000/api/v1/anomalies/17|Anomaly 17 in the API>" in text
    assert "<http://127.0.0.1:8000/anomalies/17?project=web&amp;tab=suspects|Open in the UI>" in text


def test_evidence_unavailable_is_listed_in_context() -> None:
    content = seed_incident_content(evidence_unavailable=["no source map for web@1.2.0 <app.js>"])

    message = alert_blocks(content)

    assert_valid(message)
    assert "Evidence unavailable: no source map for web@1.2.0 &lt;app.js&gt;" in all_text(message)


def test_user_strings_cannot_inject_mentions_or_links() -> None:
    content = seed_incident_content(
        title="<!channel> boom",
        culprit="<https://evil.example|click>",
        suspects=[{"sha": "abcdef012", "message": "<@U123> & co", "author": "<!here>", "score": 1, "evidence": []}],
    )

    texts = [*mrkdwn_texts(alert_blocks(content)), alert_blocks(content)["text"]]

    for text in texts:
        assert "<!" not in text and "<@" not in text and "<https://evil" not in text
    assert "&lt;@U123&gt; &amp; co" in "\n".join(texts)


def test_state_is_shown_in_header_and_footer() -> None:
    message = alert_blocks(seed_incident_content(state="resolved"))

    assert message["blocks"][0]["text"]["text"].startswith(":white_check_mark: Resolved: TypeError")
    assert "state *resolved*" in all_text(message)


def test_twenty_suspects_and_huge_values_stay_within_block_kit_limits() -> None:
    message = alert_blocks(extreme_content(suspect_count=20))

    assert_valid(message)
    assert len(message["blocks"]) <= 50
    assert slack_len(message["blocks"][0]["text"]["text"]) <= 150
    assert slack_len(message["text"]) <= 300
    # Cut text ends in an ellipsis, never inside an escape.
    for text in [*mrkdwn_texts(message), message["text"]]:
        assert not re.search(r"&(a|am|l|g|lt|gt|amp)?(…|$)", text), text[-40:]
    assert "(top 3 of 20; all of them in the API)" in all_text(message)


def test_unsafe_or_oversized_link_urls_are_not_made_into_links() -> None:
    text = all_text(alert_blocks(extreme_content(suspect_count=1)))

    assert "<javascript:" not in text
    assert "Open in the UI: `javascript:" in text
    assert "Anomaly 17 in the API: (link too long to show)" in text


def test_link_urls_cannot_end_the_link_early() -> None:
    content = seed_incident_content(links={"api_url": "http://h/a?q=x|y>z <w"})

    text = all_text(alert_blocks(content))

    # `|`, `>` and spaces inside a URL are percent-encoded so the link ends where it should.
    assert "<http://h/a?q=x%7Cy%3Ez%20%3Cw|Anomaly 17 in the API>" in text


@pytest.mark.parametrize("seed", range(25))
def test_random_unicode_values_produce_valid_messages(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab <>&*_`~|:\n\t😀é中\u200d🏳️‍🌈"

    def words(n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))

    content = seed_incident_content(
        title=words(400),
        culprit=words(600) or None,
        release=words(300) or None,
        segments=[{"column": words(20), "value": words(300) or None, "share": rng.random()} for _ in range(8)],
        suspects=[
            {
                "sha": "0123456789abcdef",
                "message": words(500),
                "author": words(200),
                "score": rng.random(),
                "evidence": [words(900) for _ in range(rng.randint(0, 8))],
            }
            for _ in range(rng.randint(0, 6))
        ],
        evidence_unavailable=[words(500) for _ in range(rng.randint(0, 12))],
    )

    for message in (alert_blocks(content), update_blocks(content, previous=content)):
        assert_valid(message)
        json.dumps(message)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("resolved", ":white_check_mark: *Resolved:*"),
        ("acknowledged", ":eyes: *Acknowledged:*"),
        ("muted", ":no_bell: *Muted:*"),
        ("open", ":chart_with_upwards_trend: *Still open:*"),
    ],
)
def test_update_blocks_say_what_changed(state: str, expected: str) -> None:
    message = update_blocks(seed_incident_content(state=state))

    assert_valid(message)
    assert all_text(message).startswith(expected + " `TypeError: &lt;x&gt;.map is not a function`")


def test_update_blocks_show_growth_against_the_previous_alert() -> None:
    before = seed_incident_content()
    after = seed_incident_content(sessions_affected=120, users=40, events=1500, rate=0.053)

    text = all_text(update_blocks(after, previous=before))

    assert "*Grown:*" in text
    assert ("37 → 120 sessions · 12 → 40 users · 2.1% → 5.3% of sessions (baseline 0.0%) · 412 → 1,500 events") in text
    assert "Anomaly 17 in the API" in text


def test_tiny_rates_and_long_delays_read_naturally() -> None:
    content = seed_incident_content(rate=0.0002, baseline_rate=None, minutes_after_deploy=185, users=1)

    text = all_text(alert_blocks(content))

    assert "<0.1% of sessions ·" in text
    assert "1 user affected" in text
    assert "caught 3.1 h after the deploy" in text


def test_a_segment_finding_says_its_browser_and_its_share_of_that_browsers_sessions() -> None:
    from dataclasses import replace

    content = replace(
        seed_incident_content(),
        tested_segment={"segment": "Safari 14", "rate": 0.04, "sessions": 1142, "sessions_affected": 46},
    )
    message = alert_blocks(content)
    assert_valid(message)
    assert "Safari 14 only: 4.0% of its sessions (46 of 1,142)" in all_text(message)
    assert "Safari 14 only: 4.0% of its sessions" in message["text"]
    assert "Safari 14 only" not in all_text(alert_blocks(seed_incident_content()))
    update = update_blocks(content)
    assert validate_message(update) is None
    assert "Safari 14 only: 4.0% of its sessions" in update["text"]


def test_the_verdict_reply_says_what_the_gate_does_with_the_deploy() -> None:
    reason = "new error: TypeError: <e>.map is not a function."
    verdict = {"status": "failing", "release": "web@1.2.0", "reason": reason}
    message = verdict_blocks(seed_incident_content(), verdict)
    assert message["text"] == "Deploy verdict: failing for web@1.2.0"
    shown = str(message["blocks"])
    assert "exits 1" in shown and "412" in shown and "&lt;e&gt;.map" in shown  # Slack's escapes, not markup
    assert validate_message(message) is None  # Slack would accept it
    healthy = verdict_blocks(seed_incident_content(), {**verdict, "status": "healthy", "reason": "below 1.0 %."})
    assert "healthy" in healthy["text"] and "exits 0" in str(healthy["blocks"])
