"""Release against release, lineage and onset against adoption: which deploy (if any) a rise belongs to."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector.model import detect_anomalies
from detector.model.attribution import attribute_rise
from detector.model.simulate import SimDeploy, SimSignature, simulate_project

from .conftest import DEPLOY_AT

MIN = pd.Timedelta(minutes=1)
HOUR = pd.Timedelta(hours=1)
BACKGROUND = [SimSignature(i, 0.001 * (i % 5 + 1)) for i in range(1, 21)]


def run(data: dict, at: pd.Timestamp):
    return detect_anomalies(data["sig_counts"], data["session_counts"], data["signatures"], data["deploys"], at)


def hourly(n: int, *, first: pd.Timestamp = DEPLOY_AT, final_share: float = 1.0) -> list[SimDeploy]:
    return [SimDeploy(i + 1, f"web@1.{i + 1}.0", first + i * HOUR, final_share=final_share) for i in range(n)]


def test_an_unfixed_bug_is_not_a_regression_of_the_releases_after_it(rng):
    bug = SimSignature(500, 0.0, {f"web@1.{i}.0": 0.02 for i in range(1, 5)}, title="TypeError: e.map")
    deploys = hourly(4)
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=1),
        end=DEPLOY_AT + 5 * HOUR,
        sessions_per_minute=100.0,
        signatures=[*BACKGROUND, bug],
        deploys=deploys,
        rng=rng,
    )
    for hours in (1.5, 2.5, 3.5, 4.9):
        findings = run(data, DEPLOY_AT + pd.Timedelta(hours=hours))
        about_bug = [(f.kind, f.deploy_id) for f in findings if f.signature_id == 500]
        assert about_bug == [("new_signature", 1)], hours


def test_a_worse_rate_in_a_later_release_is_that_releases_regression(rng):
    bug = SimSignature(500, 0.0, {"web@1.1.0": 0.005, "web@1.2.0": 0.005, "web@1.3.0": 0.05})
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=1),
        end=DEPLOY_AT + 3 * HOUR,
        sessions_per_minute=100.0,
        signatures=[*BACKGROUND, bug],
        deploys=hourly(3),
        rng=rng,
    )
    findings = [f for f in run(data, DEPLOY_AT + 2 * HOUR + 30 * MIN) if f.signature_id == 500]
    assert ("regression", 3) in [(f.kind, f.deploy_id) for f in findings]
    assert all(f.deploy_id != 2 for f in findings)


@pytest.mark.parametrize("outage_after", [30, 90, 180])
def test_a_backend_outage_after_a_deploy_is_a_spike_with_its_onset(rng, outage_after):
    start = DEPLOY_AT + outage_after * MIN
    outage = SimSignature(600, 0.0005, episodes=((start, start + 2 * HOUR, 0.05),), title="Error: 503")
    deploys = [SimDeploy(1, "web@1.1.0", DEPLOY_AT, final_share=0.97)]
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=1),
        end=start + HOUR,
        sessions_per_minute=70.0,
        signatures=[*BACKGROUND, outage],
        deploys=deploys,
        rng=rng,
    )
    for at in (start + 10 * MIN, start + 45 * MIN):
        findings = [f for f in run(data, at) if f.signature_id == 600]
        assert findings and all(f.kind == "spike" and f.deploy_id is None for f in findings)
        # the deploy test's onset estimate, or the spike CUSUM's excursion start when it saw it first
        details = findings[0].details
        onset = pd.Timestamp(details["onset"] if "onset" in details else details["spike"]["began"])
        assert abs(onset - start) <= 5 * MIN


def test_an_outage_that_began_before_the_deploy_is_not_the_deploys(rng):
    start = DEPLOY_AT - 20 * MIN
    outage = SimSignature(600, 0.0005, episodes=((start, start + 2 * HOUR, 0.05),))
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=1),
        end=DEPLOY_AT + HOUR,
        sessions_per_minute=70.0,
        signatures=[*BACKGROUND, outage],
        deploys=[SimDeploy(1, "web@1.1.0", DEPLOY_AT)],
        rng=rng,
    )
    findings = [f for f in run(data, DEPLOY_AT + 40 * MIN) if f.signature_id == 600]
    assert all(f.deploy_id is None for f in findings)


def test_the_seed_incident_stays_its_deploys_with_old_tabs_open(rng):
    seed = SimSignature(500, 0.0, {"web@1.1.0": 0.05})
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=1),
        end=DEPLOY_AT + 30 * MIN,
        sessions_per_minute=100.0,
        diurnal_amplitude=0.0,
        signatures=[*BACKGROUND, seed],
        deploys=[SimDeploy(1, "web@1.1.0", DEPLOY_AT, final_share=0.97)],
        rng=rng,
    )
    for minutes in (2, 10, 29):
        findings = [f for f in run(data, DEPLOY_AT + minutes * MIN) if f.signature_id == 500]
        assert [(f.kind, f.deploy_id) for f in findings] == [("new_signature", 1)]


def test_a_night_time_bug_stays_its_deploys_once_the_next_release_carries_it():
    """1 % of 10 sessions a minute: about one affected session every ten minutes. The release that
    brought it is replaced after an hour, and the next one carries it: the evidence of both is the
    first deploy's, which is blamed, and the next release's baseline holds the bug (no regression)."""
    hits = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        bug = SimSignature(500, 0.0, {"web@1.1.0": 0.01, "web@1.2.0": 0.01, "web@1.3.0": 0.01})
        night = DEPLOY_AT - pd.Timedelta(hours=10)  # 02:00 UTC, the diurnal trough
        data = simulate_project(
            start=night - pd.Timedelta(days=1),
            end=night + 4 * HOUR,
            sessions_per_minute=25.0,
            signatures=[*BACKGROUND, bug],
            deploys=hourly(3, first=night),
            rng=rng,
        )
        findings = [f for f in run(data, night + 4 * HOUR - MIN) if f.signature_id == 500]
        assert all(f.deploy_id == 1 for f in findings), [(f.kind, f.deploy_id) for f in findings]
        hits += bool(findings)
    assert hits >= 5


def test_attribute_rise_prefers_the_deploy_when_only_its_release_rose():
    minutes = 120
    counts = np.zeros((2, minutes))
    exposure = np.full((2, minutes), 50.0)
    exposure[1, :60] = 0.0  # the new release starts at the deploy, minute 60
    exposure[0, 60:] = 2.0  # old tabs
    counts[1, 60::3] = 1.0
    lineage = np.array([False, True])
    assert attribute_rise(counts, exposure, 0, [60], [lineage], np.log(1000)).cause == "deploy"
    counts[0, 100:] = 1.0  # old tabs fail from minute 100 on, and the new release only from 100 too
    counts[1, 60:100] = 0.0
    counts[1, 100:] = 1.0
    result = attribute_rise(counts, exposure, 0, [60], [lineage], np.log(1000))
    assert result.cause == "onset" and abs(result.onset_minute - 100) <= 1


def test_an_outage_that_ended_hours_ago_stays_a_spike_on_later_passes(rng):
    start = DEPLOY_AT + 80 * MIN
    outage = SimSignature(600, 0.004, episodes=((start, start + 60 * MIN, 0.02),), title="TypeError: Failed to fetch")
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=1),
        end=DEPLOY_AT + 10 * HOUR,
        sessions_per_minute=60.0,
        signatures=[*BACKGROUND, outage],
        deploys=hourly(5),
        rng=rng,
    )
    for hours in (2.5, 4, 6, 8, 9.9):
        findings = [f for f in run(data, DEPLOY_AT + pd.Timedelta(hours=hours)) if f.signature_id == 600]
        assert all(f.deploy_id is None for f in findings), (hours, [(f.kind, f.deploy_id) for f in findings])


def test_a_bug_a_later_release_fixed_stays_the_deploys_that_brought_it(rng):
    bug = SimSignature(500, 0.0, {"web@1.1.0": 0.02, "web@1.2.0": 0.02})
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=1),
        end=DEPLOY_AT + 6 * HOUR,
        sessions_per_minute=60.0,
        signatures=[*BACKGROUND, bug],
        deploys=hourly(4),
        rng=rng,
    )
    for hours in (1, 3, 5.9):
        findings = [f for f in run(data, DEPLOY_AT + pd.Timedelta(hours=hours)) if f.signature_id == 500]
        assert [(f.kind, f.deploy_id) for f in findings] == [("new_signature", 1)], hours


def _canaries(first: pd.Timestamp, n: int) -> list[SimDeploy]:
    """Hourly releases rolled out over 30 minutes, old tabs keeping 3 % of sessions."""
    return [
        SimDeploy(i + 1, f"web@1.{i + 1}.0", first + i * HOUR, rollout_minutes=30, final_share=0.97) for i in range(n)
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_outage_between_hourly_deploys_is_a_spike_within_minutes(seed):
    """An outage 34 minutes after a deploy, with the next deploy 26 minutes into it: every minute of it
    lies within an hour of a deploy, where the spike monitor used to be blind."""
    rng = np.random.default_rng(seed)
    deploys = _canaries(DEPLOY_AT, 4)
    start = DEPLOY_AT + HOUR + 34 * MIN
    outage = SimSignature(600, 0.0002, episodes=((start, start + 70 * MIN, 0.02),), title="Error: 503")
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=1),
        end=start + 70 * MIN,
        sessions_per_minute=200.0,
        diurnal_amplitude=0.0,
        signatures=[*BACKGROUND, outage],
        deploys=deploys,
        rng=rng,
    )
    found = None
    for minute in range(1, 31):
        findings = [f for f in run(data, start + minute * MIN) if f.signature_id == 600]
        assert all(f.kind == "spike" and f.deploy_id is None for f in findings), [
            (f.kind, f.deploy_id) for f in findings
        ]
        if findings:
            found = minute
            break
    assert found is not None and found <= 10


def test_a_regression_brought_by_an_hourly_deploy_is_never_a_spike(rng):
    """A known error raised tenfold by one release of a day of hourly deploys: the spike CUSUM sees the
    rise as soon as the deploy's tests do, but the rise follows that release's adoption, so it is left to
    the deploy (and the releases after it carry it)."""
    raised = {f"web@1.{i}.0": 0.005 for i in range(2, 6)}
    known = SimSignature(700, 0.0005, raised, title="ReferenceError: helper is not defined")
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=1),
        end=DEPLOY_AT + 5 * HOUR,
        sessions_per_minute=200.0,
        diurnal_amplitude=0.0,
        signatures=[*BACKGROUND, known],
        deploys=_canaries(DEPLOY_AT, 5),
        rng=rng,
    )
    kinds = set()
    for minutes in range(70, 300, 10):
        findings = [f for f in run(data, DEPLOY_AT + minutes * MIN) if f.signature_id == 700]
        assert all(f.kind != "spike" for f in findings), minutes
        kinds |= {(f.kind, f.deploy_id) for f in findings}
    assert kinds == {("regression", 2)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_rare_error_raised_tenfold_by_a_canary_is_its_regression_within_the_hour(seed):
    """0.03 % of sessions raised to 0.3 % by a canary of a day of hourly deploys (the busy history's
    regression): the older releases running beside it are too few to confirm it for hours, and do not
    contradict it."""
    rng = np.random.default_rng(seed)
    raised = {f"web@1.{i}.0": 0.00276 for i in range(2, 7)}
    known = SimSignature(700, 0.000276, raised, title="ReferenceError: helper is not defined")
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=2),
        end=DEPLOY_AT + 3 * HOUR,
        sessions_per_minute=246.0,
        diurnal_amplitude=0.0,
        signatures=[*BACKGROUND, known],
        deploys=_canaries(DEPLOY_AT, 3),
        rng=rng,
    )
    findings = [f for f in run(data, DEPLOY_AT + 2 * HOUR) if f.signature_id == 700]
    assert [(f.kind, f.deploy_id) for f in findings] == [("regression", 2)]
