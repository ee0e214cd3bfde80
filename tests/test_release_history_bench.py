"""The release-history benchmark's scenarios, traffic and scoring rules, and a smoke run through the real app."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from bench import detection_traffic as traffic
from bench.history_scenarios import (
    SEGMENTS,
    Alert,
    Incident,
    Release,
    Scenario,
    TrafficGenerator,
    _bug_sig,
    _crash_sig,
    _outage_sigs,
    build_scenario,
    score_alert,
)
from detector.intake.normalize import parse_user_agent
from detector.intake.sessions import parse_session_update


def hand_made(minutes: int = 600) -> Scenario:
    """Release 0 before the timeline; 1 at minute 100 brings bug0, fixed by 3 (minute 300); 2 at 200 is
    benign; 4 at 400 brings a Safari 16 crash; an outage from 250 to 290."""
    api, network = _outage_sigs(0)
    background = [*traffic.background_catalogue(), api, network]
    releases = [Release(0, "web@1.0.0", -1440)] + [Release(i, f"web@1.{i}.0", 100 * i) for i in range(1, 5)]
    incidents = [
        Incident("bug0", "new_bug", (_bug_sig(0, 0.0),), (0.04,), (0.0,), release_from=1, release_fixed=3),
        Incident(
            "browser1", "browser_bug", (_crash_sig(1, 0.0),), (0.04,), (0.0,), release_from=4, segment="Safari 16"
        ),
        Incident(
            "outage0",
            "outage",
            (api, network),
            (0.05, 0.02),
            (api.rate, network.rate),
            start_minute=250,
            end_minute=290,
        ),
    ]
    return Scenario(
        name="hand",
        seed=3,
        minutes=minutes,
        low=50.0,
        high=50.0,
        start_hour=10.0,
        releases=releases,
        incidents=incidents,
        background=background,
    )


DEPLOYS = {11: 1, 12: 2, 13: 3, 14: 4}  # deploy id -> release index


def alert(kind: str, culprit: str, deploy_id: int | None, minute: int, title: str = "t") -> Alert:
    return Alert(1, kind, title, culprit, deploy_id, "", minute)


@pytest.mark.parametrize(
    ("kind", "culprit", "deploy_id", "minute", "expected", "incident"),
    [
        ("new_signature", "applyPromo0", 11, 105, "true", "bug0"),  # the bug on the deploy that brought it
        ("regression", "applyPromo0", 12, 230, "repeat", "bug0"),  # ... pinned on the next deploy
        ("new_signature", "applyPromo0", None, 150, "false", "bug0"),  # ... reported with no deploy
        ("new_signature", "snapshotState1", 14, 420, "true", "browser1"),
        ("spike", "loadOrders0", None, 260, "true", "outage0"),  # an outage as a spike with no deploy
        ("regression", "fetchJson0", 12, 260, "misattributed", "outage0"),  # ... blamed on a deploy
        ("spike", "fetchJson0", None, 400, "false", "outage0"),  # an outage signature long after the outage
        ("regression", "fetchJson0", 13, 400, "false", "outage0"),  # ... on a deploy: not the outage's fault
        ("regression", "handler3", 12, 230, "false", None),  # a background signature whose rate never changed
        ("release_error_rate", "", 11, 120, "true", "bug0"),  # the release that brought a bug
        ("release_error_rate", "", 12, 270, "misattributed", "outage0"),  # a release live during the outage
        ("release_error_rate", "", 12, 215, "repeat", "bug0"),  # bug0 is still in release 2, same rate
        ("release_error_rate", "", 13, 320, "false", None),  # release 3 fixed it: benign
        ("new_signature", "applyPromo0", 99, 320, "false", None),  # a deploy this history never made
    ],
)
def test_scoring_rules(
    kind: str, culprit: str, deploy_id: int | None, minute: int, expected: str, incident: str | None
) -> None:
    verdict = score_alert(hand_made(), alert(kind, culprit, deploy_id, minute), DEPLOYS)
    assert (verdict.verdict, verdict.incident) == (expected, incident), verdict.reason
    assert verdict.detects == (expected == "true" and kind != "release_error_rate")
    assert verdict.reason


def test_release_shares_follow_canaries_and_leave_long_lived_tabs() -> None:
    scenario = hand_made()
    canary = ((0, 0.05), (15, 0.25), (30, 1.0))
    scenario.releases[2] = replace(scenario.releases[2], steps=canary)
    shares = scenario.release_shares()
    assert np.allclose(shares.sum(axis=0), 1.0)
    assert shares[0, 50] == pytest.approx(1.0)
    assert 0.04 < shares[2, 205] < 0.08  # the canary's 5 % (old tabs keep release 1 a little above its 95 %)
    assert 0.2 < shares[2, 220] < 0.3
    assert shares[2, 260] > 0.9
    # Two hours after release 1 lost new page loads, long-lived tabs still open sessions on it; a release
    # never deployed yet has none.
    assert 0.005 < shares[1, 350] < 0.04
    assert shares[4, 399] == 0.0


def test_traffic_is_real_session_updates_and_the_browser_bug_stays_in_its_segment() -> None:
    from datetime import UTC, datetime

    scenario = hand_made()
    start = datetime(2026, 12, 1, tzinfo=UTC)
    generator = TrafficGenerator(scenario, np.random.default_rng(5), start=start)
    crash_browsers: set[str | None] = set()
    init_sessions = 0
    sessions = 0
    for minute in range(400, 520):
        batch = generator.minute(minute)
        sessions += batch.sessions
        for envelope in batch.envelopes:
            lines = envelope.split(b"\n")
            assert lines[0] == b"{}"
            for header, payload in zip(lines[1::2], lines[2::2], strict=True):
                item_type = json.loads(header)["type"]
                if item_type == "session":
                    update = parse_session_update(payload)
                    body = json.loads(payload)
                    assert set(body["attrs"]) >= {"release", "environment", "user_agent"}
                    init_sessions += update.init
                elif item_type == "event":
                    event = json.loads(payload)
                    if event["exception"]["values"][0]["value"].startswith("structuredClone1"):
                        crash_browsers.add(parse_user_agent(event["request"]["headers"]["User-Agent"])[0])
    assert init_sessions == sessions  # one init item per session started
    assert crash_browsers == {"Safari 16"}
    truth = generator.truth["browser1"]
    assert len(truth.exposure) == 120
    # The oracle's stream is Safari 16 sessions of release 4: about 3 % of sessions
    assert 0.015 < sum(truth.exposure) / sessions < 0.045
    assert {parse_user_agent(s.user_agent)[0] for s in SEGMENTS} == {s.name for s in SEGMENTS}


def test_scenarios_are_reproducible_from_their_seed() -> None:
    a, b, c = build_scenario("busy", 4), build_scenario("busy", 4), build_scenario("busy", 5)
    assert a.incidents == b.incidents and a.releases == b.releases
    assert (a.incidents, a.releases) != (c.incidents, c.releases)
    assert len(a.deployed) == 19
    assert 40 * 60 <= a.minutes <= 48 * 60
    assert all(step == ((0, 0.05), (15, 0.25), (30, 1.0)) for step in (r.steps for r in a.deployed))
    shop = build_scenario("shop-day", 1)
    assert len(shop.deployed) == 10 and sum(i.is_outage for i in shop.incidents) == 1
    assert any(shop.sessions_per_minute(r.deploy_minute) < 20 for r in shop.deployed)  # a night-time deploy
    night = [
        i
        for i in shop.incidents
        if i.kind == "new_bug"
        and i.release_from is not None
        and shop.sessions_per_minute(shop.releases[i.release_from].deploy_minute) < 20
    ]
    assert [i.extra_rates for i in night] == [(0.01,)]  # ... bringing issue 14's 1 % night-time bug
    outage = next(i for i in shop.incidents if i.is_outage)
    assert any(30 <= (outage.start_minute or 0) - r.deploy_minute <= 180 for r in shop.deployed)


def test_smoke_run_through_the_real_app(database_url: str) -> None:
    """A short history through intake, deploys, passes and the anomaly list: every session reaches the
    store, and the 4 % bug at 50 sessions/min is found on its deploy (the seed incident's case)."""
    from sqlalchemy import func, select

    from bench.detection import App
    from bench.history_scenarios import score_alerts
    from bench.release_history import run_scenario
    from detector.store.models import SessionMinute

    scenario = hand_made(minutes=160)
    scenario.releases[:] = scenario.releases[:2]
    scenario.incidents[:] = scenario.incidents[:1]
    app = App(database_url)
    try:
        alerts, deploy_release, _generator, sessions, _events, passes = run_scenario(
            app, scenario, slug="smoke", dense_every=1, dense_minutes=20, sparse_every=5, log=lambda _text: None
        )
        with app.factory() as session:
            stored = session.scalar(select(func.sum(SessionMinute.started)))
    finally:
        app.close()
    assert stored == sessions
    assert list(deploy_release.values()) == [1]
    assert passes >= 20 + 160 // 5 - 4
    verdicts = score_alerts(scenario, alerts, deploy_release)
    found = [v for v in verdicts if v.verdict == "true" and v.detects]
    assert found and found[0].incident == "bug0"
    assert found[0].alert.minute - 100 <= 10
