from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector.model import DetectorConfig, DetectorInputError, detect_anomalies
from detector.model.simulate import SimDeploy, SimSignature, simulate_project

from .conftest import DEPLOY_AT, frames

MIN = pd.Timedelta(minutes=1)
BACKGROUND = [SimSignature(i, 0.001 * (i % 5 + 1)) for i in range(1, 21)]


def run(data: dict, at: pd.Timestamp, config: DetectorConfig | None = None):
    return detect_anomalies(data["sig_counts"], data["session_counts"], data["signatures"], data["deploys"], at, config)


def project(rng, signatures, deploys, *, sessions_per_minute=100.0, days=2.0, after=pd.Timedelta(hours=1)):
    return simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=days),
        end=DEPLOY_AT + after,
        sessions_per_minute=sessions_per_minute,
        signatures=signatures,
        deploys=deploys,
        rng=rng,
    )


def test_seed_incident_alarms_within_two_minutes(rng):
    seed = SimSignature(500, 0.0, {"web@1.2.0": 0.05}, title="TypeError: e.map is not a function")
    data = simulate_project(
        start=DEPLOY_AT - pd.Timedelta(days=2),
        end=DEPLOY_AT + 10 * MIN,
        sessions_per_minute=100.0,
        diurnal_amplitude=0.0,
        signatures=[*BACKGROUND, seed],
        deploys=[SimDeploy(7, "web@1.2.0", DEPLOY_AT)],
        rng=rng,
    )
    findings = run(data, DEPLOY_AT + 2 * MIN)
    new = [f for f in findings if f.kind == "new_signature"]
    assert [f.signature_id for f in new] == [500]
    assert new[0].deploy_id == 7 and new[0].release == "web@1.2.0"
    assert new[0].crossed_at <= DEPLOY_AT + 2 * MIN
    assert new[0].key == "new_signature:500:7"
    assert new[0].score >= 1.0 and new[0].users >= 2
    assert new[0].rate == pytest.approx(0.05, abs=0.03)


def test_pass_sees_only_minutes_up_to_at(rng):
    seed = SimSignature(500, 0.0, {"web@1.2.0": 0.05})
    data = project(rng, [*BACKGROUND, seed], [SimDeploy(7, "web@1.2.0", DEPLOY_AT)])
    at = DEPLOY_AT + 3 * MIN
    live = {k: (v[v["minute"] < at.floor("min") + MIN] if "minute" in v else v) for k, v in data.items()}
    assert run(live, at) == run(data, at)


def test_new_signature_in_one_session_does_not_alarm():
    rows = [
        {
            "signature_id": 9,
            "release": "web@2",
            "environment": "production",
            "minute": DEPLOY_AT + 3 * MIN,
            "events": 40,
            "users": 1,
            "sessions": 1,
        }
    ]
    sessions = [
        {
            "release": "web@2",
            "environment": "production",
            "minute": DEPLOY_AT + i * MIN,
            "started": 20,
            "errored": 1 if i == 3 else 0,
            "crashed": 0,
        }
        for i in range(10)
    ]
    sigs = [
        {"signature_id": 9, "title": "Boom", "first_seen": DEPLOY_AT + 3 * MIN, "noise_class": None, "in_app": True}
    ]
    data = frames(
        rows,
        sessions,
        sigs,
        [{"deploy_id": 1, "release": "web@2", "environment": "production", "deployed_at": DEPLOY_AT}],
    )
    assert run(data, DEPLOY_AT + 9 * MIN) == []


def test_one_users_error_loop_is_not_an_outage():
    rows = [
        {
            "signature_id": 9,
            "release": "web@2",
            "environment": "production",
            "minute": DEPLOY_AT + i * MIN,
            "events": 60,
            "users": 1,
            "sessions": 1,
        }
        for i in range(60)
    ]
    sessions = [
        {
            "release": "web@2",
            "environment": "production",
            "minute": DEPLOY_AT + i * MIN,
            "started": 5,
            "errored": 1,
            "crashed": 0,
        }
        for i in range(60)
    ]
    sigs = [{"signature_id": 9, "title": "Loop", "first_seen": DEPLOY_AT, "noise_class": None, "in_app": True}]
    data = frames(
        rows,
        sessions,
        sigs,
        [{"deploy_id": 1, "release": "web@2", "environment": "production", "deployed_at": DEPLOY_AT}],
    )
    assert [f for f in run(data, DEPLOY_AT + 59 * MIN) if f.signature_id == 9] == []


@pytest.mark.parametrize("noise_class", ["resize_observer", "script_error", "extension", "bot"])
def test_suppressed_noise_classes_never_alarm(rng, noise_class):
    noisy = SimSignature(600, 0.0, {"web@1.2.0": 0.2}, noise_class=noise_class)
    data = project(rng, [*BACKGROUND, noisy], [SimDeploy(7, "web@1.2.0", DEPLOY_AT)], days=1)
    assert [f for f in run(data, DEPLOY_AT + 30 * MIN) if f.signature_id == 600] == []


def test_chunk_load_errors_right_after_deploy_are_expected(rng):
    data = project(rng, BACKGROUND, [SimDeploy(7, "web@1.2.0", DEPLOY_AT)], days=1, after=20 * MIN)
    burst = [
        {
            "signature_id": 700,
            "release": "web@1.0.0",
            "environment": "production",
            "minute": DEPLOY_AT + i * MIN,
            "events": 30,
            "users": 20,
            "sessions": 20,
        }
        for i in range(10)
    ]
    data["sig_counts"] = pd.concat([data["sig_counts"], frames(burst, [], [], [])["sig_counts"]])
    data["signatures"] = pd.concat(
        [
            data["signatures"],
            pd.DataFrame(
                [
                    {
                        "signature_id": 700,
                        "title": "ChunkLoadError",
                        "first_seen": DEPLOY_AT,
                        "noise_class": "chunk_load",
                        "in_app": False,
                    }
                ]
            ),
        ]
    )
    assert [f for f in run(data, DEPLOY_AT + 19 * MIN) if f.signature_id == 700] == []


@pytest.mark.parametrize(("noise_class", "release_alarm"), [("chunk_load", False), (None, True)])
def test_sessions_errored_by_post_deploy_noise_do_not_raise_the_release_error_rate(rng, noise_class, release_alarm):
    data = project(rng, BACKGROUND, [SimDeploy(7, "web@1.2.0", DEPLOY_AT)], days=1, after=20 * MIN)
    burst = [
        {
            "signature_id": 700,
            "release": "web@1.2.0",
            "environment": "production",
            "minute": DEPLOY_AT + i * MIN,
            "events": 30,
            "users": 20,
            "sessions": 20,
        }
        for i in range(10)
    ]
    data["sig_counts"] = pd.concat([data["sig_counts"], frames(burst, [], [], [])["sig_counts"]])
    sessions = data["session_counts"]
    hit = (sessions["release"] == "web@1.2.0") & (sessions["minute"] < DEPLOY_AT + 10 * MIN)
    sessions.loc[hit, "errored"] = np.minimum(sessions.loc[hit, "errored"] + 20, sessions.loc[hit, "started"])
    data["signatures"] = pd.concat(
        [
            data["signatures"],
            pd.DataFrame(
                [
                    {
                        "signature_id": 700,
                        "title": "ChunkLoadError",
                        "first_seen": DEPLOY_AT,
                        "noise_class": noise_class,
                        "in_app": True,
                    }
                ]
            ),
        ]
    )
    kinds = {f.kind for f in run(data, DEPLOY_AT + 19 * MIN)}
    assert ("release_error_rate" in kinds) is release_alarm


@pytest.mark.parametrize(("noise_class", "in_app"), [(None, False), ("third_party", True), ("network", True)])
def test_noisy_signatures_need_much_stronger_evidence(noise_class, in_app):
    # two signatures with identical counts: the first-party one alarms, the noisy one not yet
    rows = [
        {
            "signature_id": sig,
            "release": "web@2",
            "environment": "production",
            "minute": DEPLOY_AT + i * MIN,
            "events": 2,
            "users": 2,
            "sessions": 2,
        }
        for sig in (1, 2)
        for i in range(2)
    ]
    sessions = [
        {
            "release": "web@2",
            "environment": "production",
            "minute": DEPLOY_AT + i * MIN,
            "started": 100,
            "errored": 4,
            "crashed": 0,
        }
        for i in range(2)
    ]
    sigs = [
        {"signature_id": 1, "title": "ours", "first_seen": DEPLOY_AT, "noise_class": None, "in_app": True},
        {"signature_id": 2, "title": "theirs", "first_seen": DEPLOY_AT, "noise_class": noise_class, "in_app": in_app},
    ]
    data = frames(
        rows,
        sessions,
        sigs,
        [
            {
                "deploy_id": 1,
                "release": "web@2",
                "environment": "production",
                "deployed_at": DEPLOY_AT - pd.Timedelta(hours=1),
            }
        ],
    )
    assert {f.signature_id for f in run(data, DEPLOY_AT + MIN)} == {1}


def test_low_traffic_null_project_stays_quiet(rng):
    data = project(
        rng, BACKGROUND, [SimDeploy(7, "web@1.2.0", DEPLOY_AT)], sessions_per_minute=3.0, after=pd.Timedelta(hours=6)
    )
    assert run(data, DEPLOY_AT + pd.Timedelta(hours=6) - MIN) == []


def test_regression_against_concurrent_old_release(rng):
    worse = SimSignature(5, 0.01, {"web@1.2.0": 0.04})
    rollout = SimDeploy(7, "web@1.2.0", DEPLOY_AT, rollout_minutes=1, final_share=0.5)
    data = project(rng, [*BACKGROUND, worse], [rollout], after=pd.Timedelta(hours=2))
    findings = run(data, DEPLOY_AT + pd.Timedelta(hours=2) - MIN)
    regressions = [f for f in findings if f.kind == "regression"]
    assert [f.signature_id for f in regressions] == [5]
    assert regressions[0].deploy_id == 7 and regressions[0].key == "regression:5:7"
    assert regressions[0].rate > 2 * regressions[0].baseline_rate


def test_rise_on_both_releases_is_not_blamed_on_the_deploy(rng):
    # a backend outage raises signature 5 on old and new release alike, right after the deploy
    outage = SimSignature(5, 0.01, {"web@1.0.0": 0.04, "web@1.2.0": 0.04})
    before = project(rng, [*BACKGROUND, SimSignature(5, 0.01)], [], after=pd.Timedelta(0))
    rollout = SimDeploy(7, "web@1.2.0", DEPLOY_AT, rollout_minutes=1, final_share=0.5)
    after = simulate_project(
        start=DEPLOY_AT,
        end=DEPLOY_AT + pd.Timedelta(hours=2),
        sessions_per_minute=100,
        signatures=[*BACKGROUND, outage],
        deploys=[rollout],
        rng=rng,
    )
    data = {k: pd.concat([before[k], after[k]], ignore_index=True) for k in ("sig_counts", "session_counts")}
    data["signatures"], data["deploys"] = after["signatures"], after["deploys"]
    findings = run(data, DEPLOY_AT + pd.Timedelta(hours=2) - MIN)
    assert [f for f in findings if f.kind == "regression"] == []


def test_release_error_rate_rise(rng):
    worse = SimSignature(5, 0.01, {"web@1.2.0": 0.08})
    data = project(rng, [*BACKGROUND, worse], [SimDeploy(7, "web@1.2.0", DEPLOY_AT)])
    findings = run(data, DEPLOY_AT + 30 * MIN)
    release_level = [f for f in findings if f.kind == "release_error_rate"]
    assert len(release_level) == 1
    assert release_level[0].signature_id is None and release_level[0].key == "release_error_rate:production:7"
    assert release_level[0].rate > release_level[0].baseline_rate


def test_spike_without_deploy_has_a_stable_key(rng):
    start = DEPLOY_AT - pd.Timedelta(days=1)
    calm = simulate_project(
        start=start,
        end=DEPLOY_AT,
        sessions_per_minute=100,
        signatures=[*BACKGROUND, SimSignature(5, 0.005)],
        deploys=[],
        rng=rng,
    )
    hot = simulate_project(
        start=DEPLOY_AT,
        end=DEPLOY_AT + pd.Timedelta(hours=1),
        sessions_per_minute=100,
        signatures=[*BACKGROUND, SimSignature(5, 0.03)],
        deploys=[],
        rng=rng,
    )
    data = {k: pd.concat([calm[k], hot[k]], ignore_index=True) for k in ("sig_counts", "session_counts")}
    data["signatures"], data["deploys"] = calm["signatures"], calm["deploys"]
    first = [f for f in run(data, DEPLOY_AT + 20 * MIN) if f.kind == "spike"]
    later = [f for f in run(data, DEPLOY_AT + 40 * MIN) if f.kind == "spike"]
    assert [f.signature_id for f in first] == [5]
    assert first[0].deploy_id is None
    assert first[0].crossed_at <= DEPLOY_AT + 10 * MIN
    assert [f.key for f in later] == [first[0].key]


def test_a_cold_start_baseline_does_not_make_spikes():
    # a project's first hours: the spike window's baseline is the few minutes before it, and a rate read
    # off a handful of sessions is often low; the plain estimate (z = 0) alarms, the default does not
    start = pd.Timestamp("2026-11-27 00:00", tz="UTC")
    sigs = [SimSignature(i, r) for i, r in enumerate([0.003, 0.003, 0.005, 0.005, 0.01, 0.002, 0.002, 0.001], 1)]
    found: dict[float, set[str]] = {0.0: set(), 2.0: set()}
    for seed in range(3):
        data = simulate_project(
            start=start,
            end=start + pd.Timedelta(hours=10),
            sessions_per_minute=100,
            signatures=sigs,
            deploys=[],
            rng=np.random.default_rng(seed),
        )
        for minute in range(6 * 60 + 5, 10 * 60, 10):
            for z, keys in found.items():
                at = start + pd.Timedelta(minutes=minute)
                keys |= {f.key for f in run(data, at, DetectorConfig(spike_baseline_z=z))}
    assert found[2.0] == set()
    assert found[0.0]


def test_missing_column_is_reported(rng):
    data = project(rng, BACKGROUND, [], days=0.1, after=pd.Timedelta(0))
    with pytest.raises(DetectorInputError, match="sessions"):
        run({**data, "sig_counts": data["sig_counts"].drop(columns="sessions")}, DEPLOY_AT)


def test_config_rejects_budget_shares_not_summing_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        DetectorConfig(budget_shares={"new_signature": 0.5, "regression": 0.5, "release_error_rate": 0.5, "spike": 0.5})


def test_null_project_with_deploys_stays_quiet():
    rng = np.random.default_rng(3)
    deploys = [SimDeploy(i, f"web@1.{i}.0", DEPLOY_AT - pd.Timedelta(hours=6 * (4 - i))) for i in range(1, 5)]
    data = project(rng, BACKGROUND, deploys, after=pd.Timedelta(hours=3))
    assert run(data, DEPLOY_AT + pd.Timedelta(hours=3) - MIN) == []


@pytest.mark.parametrize(("days_before", "new"), [(3, False), (15, True)])
def test_a_signature_seen_in_the_lookback_before_the_counts_is_not_new(rng, days_before, new):
    """The loader supplies minute counts for the last day only; a signature seen 3 days before the
    deploy (``last_seen_before``) is known, not new, whatever its ``first_seen``; one last seen 15 days
    before is new again (default lookback 14 days). Either way a 5 % rise is flagged once."""
    back = SimSignature(900, 0.0, {"web@1.2.0": 0.05}, first_seen=DEPLOY_AT - pd.Timedelta(days=30))
    data = project(rng, [*BACKGROUND, back], [SimDeploy(7, "web@1.2.0", DEPLOY_AT)], days=1.0, after=10 * MIN)
    seen = DEPLOY_AT - pd.Timedelta(days=days_before)
    data["signatures"]["last_seen_before"] = pd.to_datetime(
        [seen if s == 900 else pd.NaT for s in data["signatures"]["signature_id"]], utc=True
    )
    findings = [f for f in run(data, DEPLOY_AT + 9 * MIN) if f.signature_id == 900]
    assert [f.kind for f in findings] == ["new_signature" if new else "regression"]
    assert findings[0].deploy_id == 7


def test_release_error_rate_counts_sessions_errored_by_app_errors(rng):
    """A release where only browser noise rose (ResizeObserver in 5 % of sessions instead of 0.5 %) has
    more errored sessions, but not more app errors: no release-level finding unless noise is counted."""
    noise = SimSignature(6, 0.005, {"web@1.2.0": 0.05}, noise_class="resize_observer")
    data = project(rng, [*BACKGROUND, noise], [SimDeploy(7, "web@1.2.0", DEPLOY_AT)])
    at = DEPLOY_AT + 30 * MIN
    assert [f for f in run(data, at) if f.kind == "release_error_rate"] == []
    counted = DetectorConfig(release_errors_exclude_noise=False)
    assert [f.kind for f in run(data, at, counted) if f.kind == "release_error_rate"] == ["release_error_rate"]


def test_release_error_rate_sees_a_small_rise_of_every_app_error(rng):
    """Every app error 10 % more frequent, at 1,000 sessions/min against a day-long previous release:
    the release grid's ratios near 1 catch it within two hours; with the signatures' grid (lowest
    ratio 1.25, whose evidence drifts down when the truth is 1.1) it is never caught."""
    slow = [SimSignature(s.signature_id, s.rate, {"web@1.2.0": s.rate * 1.1}) for s in BACKGROUND]
    data = project(
        rng,
        slow,
        [SimDeploy(7, "web@1.2.0", DEPLOY_AT)],
        sessions_per_minute=1000.0,
        days=1.0,
        after=pd.Timedelta(hours=2),
    )
    hourly = DetectorConfig(deploys_per_week=168)  # thresholds of a project deploying every hour
    findings = [f for f in run(data, DEPLOY_AT + pd.Timedelta(hours=2), hourly) if f.kind == "release_error_rate"]
    assert len(findings) == 1 and findings[0].deploy_id == 7
    assert findings[0].rate == pytest.approx(findings[0].baseline_rate * 1.1, rel=0.05)
    coarse = DetectorConfig(deploys_per_week=168, release_rate_ratios=DetectorConfig().rate_ratios)
    assert [f for f in run(data, DEPLOY_AT + pd.Timedelta(hours=2), coarse) if f.kind == "release_error_rate"] == []


def test_a_dormant_signature_coming_back_at_a_trickle_is_not_a_regression(rng):
    """Seen 3 days before the deploy, absent from the supplied day, back at 0.08 % of sessions (below
    the 0.1 % floor; 0.8 sessions a minute at 1,000 sessions/min, so the 2-user gate opens): its rate
    before is unknown, not zero, so no finding."""
    back = SimSignature(900, 0.0, {"web@1.2.0": 0.0008}, first_seen=DEPLOY_AT - pd.Timedelta(days=30))
    data = project(
        rng,
        [*BACKGROUND, back],
        [SimDeploy(7, "web@1.2.0", DEPLOY_AT)],
        days=1.0,
        after=pd.Timedelta(hours=1),
        sessions_per_minute=1000.0,
    )
    data["signatures"]["last_seen_before"] = pd.to_datetime(
        [DEPLOY_AT - pd.Timedelta(days=3) if s == 900 else pd.NaT for s in data["signatures"]["signature_id"]], utc=True
    )
    back_rows = data["sig_counts"][data["sig_counts"]["signature_id"] == 900]
    assert (back_rows["users"] >= 2).sum() >= 3  # it did come back, in minutes that pass the gates
    at = DEPLOY_AT + 59 * MIN  # the deploy's tests only (spike monitoring resumes an hour after it)
    assert [f for f in run(data, at, DetectorConfig(deploys_per_week=168)) if f.signature_id == 900] == []


def test_a_new_signature_below_the_floor_is_not_reported_as_a_spike_later(rng):
    """A deploy brings a harmless new error in 0.08 % of sessions (below the 0.1 % floor). Its deploy's
    test watches it for a day; the spike CUSUM, which resumes an hour after the deploy with that hour in
    its baseline, must not report it as a spike with no deploy to blame."""
    harmless = SimSignature(900, 0.0, {"web@1.2.0": 0.0008})
    data = project(
        rng,
        [*BACKGROUND, harmless],
        [SimDeploy(7, "web@1.2.0", DEPLOY_AT)],
        days=1.0,
        after=pd.Timedelta(hours=3),
        sessions_per_minute=1000.0,
    )
    config = DetectorConfig(deploys_per_week=168)
    assert [f for f in run(data, DEPLOY_AT + pd.Timedelta(hours=3), config) if f.signature_id == 900] == []
    # without a deploy to own it, the same rise is a spike
    no_deploy = {**data, "deploys": data["deploys"].iloc[0:0]}
    later = pd.Timedelta(hours=3)
    assert [f.kind for f in run(no_deploy, DEPLOY_AT + later, config) if f.signature_id == 900] == ["spike"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_outage_raising_a_background_error_a_hundredfold_is_a_spike_within_minutes(seed):
    # 5xx that a backend returns to 0.02 % of sessions, at 2 % during an outage (about one session a
    # minute): the 2x CUSUM alone needs 10-15 minutes of it, the steep ones about half
    rng = np.random.default_rng(seed)
    onset = DEPLOY_AT
    signatures = [*BACKGROUND, SimSignature(5, 0.0002)]
    calm = simulate_project(
        start=onset - pd.Timedelta(days=1),
        end=onset,
        sessions_per_minute=60,
        signatures=signatures,
        deploys=[],
        rng=rng,
    )
    outage = [*BACKGROUND, SimSignature(5, 0.02)]
    hot = simulate_project(
        start=onset, end=onset + 30 * MIN, sessions_per_minute=60, signatures=outage, deploys=[], rng=rng
    )
    data = {k: pd.concat([calm[k], hot[k]], ignore_index=True) for k in ("sig_counts", "session_counts")}
    data["signatures"], data["deploys"] = calm["signatures"], calm["deploys"]

    def crossed(config: DetectorConfig | None) -> pd.Timestamp | None:
        for minute in range(1, 31):
            spikes = [f for f in run(data, onset + minute * MIN, config) if f.kind == "spike"]
            if spikes:
                assert [f.signature_id for f in spikes] == [5]
                return spikes[0].crossed_at
        return None

    steep = crossed(None)
    assert steep is not None and steep <= onset + 8 * MIN
    gentle = crossed(DetectorConfig(spike_steep_ratios=()))
    assert gentle is None or gentle > steep
