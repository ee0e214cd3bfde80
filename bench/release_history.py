"""Release-history benchmark: a team's days of releases replayed through the real intake path, every alert scored.

    python -m bench.release_history [--quick] [--scenarios shop-day,busy] [--seeds 1] [--random 0]
                                    [--database sqlite|postgresql]

Each scenario (`bench.history_scenarios`: persistent bugs fixed releases later, backend outages at random
times, deploys at every hour of a diurnal day, long-lived tabs, a browser-only crash, canaries, noise) lives
in its own project of one database. Each simulated minute of traffic goes to ``POST /api/{id}/envelope/``
as Sentry envelopes (a ``session`` item per session start with ``attrs.user_agent``, an update per errored
session, an ``event`` per affected session); deploys go through ``POST /api/v1/projects/{slug}/deploys``;
the intake rows are digested as the worker does before each pass, ``POST /api/v1/projects/{slug}/detect?at=``
runs every ``--sparse-every`` minutes of simulated time, every ``--dense-every`` minutes for
``--dense-minutes`` after each deploy; after each pass the new anomalies are read from
``GET /api/v1/projects/{slug}/anomalies`` (an anomaly seen before, updated since, is not a new alert).

Every alert is scored (`history_scenarios.score_alert`): true (names the incident's signature, or the release
for a release-level alert, and the deploy that brought it; for an outage, no deploy), repeat (an incident's
signature pinned on a later deploy), misattributed (an outage blamed on a deploy) or false (anything else).
Beside the detector, an oracle per incident: a Poisson CUSUM that knows the true rates of the one stream that
changes (the bringing release's sessions; for the browser-only crash that browser's sessions of it; for an
outage every session), tuned by simulation to one false alarm per week on that stream (as in
`bench.detection`), run on the same minute counts from the onset. The figures:

* (a) false + repeat + misattributed alerts per 100 deploys (goal <= 1);
* (b) recall of the incidents the oracle finds within 60 minutes (goal >= 95 %), by sessions/min at the
  onset (<20, 20-100, >100): found at all, and found within 60 minutes;
* (c) median over incidents of our time to detect / the oracle's (goal <= 1.5);
* (d) whether each browser-only crash is found.

A table per scenario, the list of every non-true alert with its reason, and last one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench.detection import App
from bench.history_scenarios import (
    Alert,
    Incident,
    Scenario,
    TrafficGenerator,
    Verdict,
    build_scenario,
    incident_onset,
    oracle_rates,
    score_alerts,
)
from bench.scratch_databases import scratch_database

ORACLE_WINDOW = 60
LEVELS = ((0.0, 20.0, "<20"), (20.0, 100.0, "20-100"), (100.0, float("inf"), ">100"))


@dataclass
class IncidentResult:
    incident: Incident
    onset: int
    level: float  # sessions/min at the onset
    oracle_delay: float | None
    detected_after: float | None  # minutes from onset to the first pass reporting a true alert
    kind_found: str | None


@dataclass
class ScenarioResult:
    scenario: Scenario
    database: str
    verdicts: list[Verdict]
    incidents: list[IncidentResult]
    sessions: int
    events: int
    passes: int
    seconds: float


def level_label(level: float) -> str:
    return next(label for low, high, label in LEVELS if low <= level < high)


def list_new_anomalies(app: App, slug: str, seen: set[int]) -> list[dict[str, Any]]:
    """Anomalies not seen before, through the list endpoint (newest first, paged until a known one)."""
    fresh: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        response = app.client.get(f"/api/v1/projects/{slug}/anomalies", headers=app.auth, params=params)
        if response.status_code != 200:
            raise RuntimeError(f"anomalies answered {response.status_code}: {response.text[:200]}")
        body = response.json()
        items = body["items"] if isinstance(body, dict) else body
        stop = False
        for item in items:
            if item["id"] in seen:
                stop = True
                break
            fresh.append(item)
        cursor = body.get("next") if isinstance(body, dict) else None
        if stop or not cursor:
            return fresh


def run_scenario(
    app: App, scenario: Scenario, *, slug: str, dense_every: int, dense_minutes: int, sparse_every: int, log: Any
) -> tuple[list[Alert], dict[int, int], TrafficGenerator, int, int, int]:
    project_id, slug, key = app.project(slug)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=scenario.minutes + 60)  # the timeline ends an hour ago
    # Two weeks of earlier deploys at the scenario's cadence (no traffic: they set the detector's
    # deploys-per-week), ending a day before the timeline so none is still watched; the initial release
    # has no deploy (as in bench.detection): its errors are the background the timeline starts from.
    every = max(scenario.cadence_minutes, 30.0)
    history = [
        (f"web@0.{h}.0", start - timedelta(days=1, minutes=every * h)) for h in range(int(13 * 1440 / every), 0, -1)
    ]
    app.history_deploys(project_id, history)
    generator = TrafficGenerator(scenario, np.random.default_rng([scenario.seed, 7]), start=start)
    deploy_at = {r.deploy_minute: r for r in scenario.deployed}
    deploy_release: dict[int, int] = {}
    alerts: list[Alert] = []
    seen: set[int] = set()
    last_deploy = -(10**9)
    sessions = events = passes = 0
    began = time.perf_counter()
    for minute in range(scenario.minutes):
        at = start + timedelta(minutes=minute)
        if minute in deploy_at:
            release = deploy_at[minute]
            deploy_release[app.deploy(slug, release.name, at)] = release.index
            last_deploy = minute
        batch = generator.minute(minute)
        for envelope in batch.envelopes:
            app.post(project_id, key, envelope)
        sessions += batch.sessions
        events += batch.events
        since = minute - last_deploy
        dense = since < dense_minutes and since % dense_every == dense_every - 1
        if dense or minute % sparse_every == sparse_every - 1 or minute == scenario.minutes - 1:
            app.digest()
            app.detect(slug, at + timedelta(seconds=59))
            passes += 1
            for item in reversed(list_new_anomalies(app, slug, seen)):
                seen.add(item["id"])
                detail = app.anomaly(slug, item["id"])
                alerts.append(
                    Alert(
                        item["id"],
                        item["kind"],
                        item["title"],
                        detail["culprit"],
                        item["deploy_id"],
                        item["release"],
                        minute,
                    )
                )
        if minute % 600 == 599:
            log(
                f"    {scenario.name}: minute {minute + 1}/{scenario.minutes}, {sessions} sessions, "
                f"{len(alerts)} alerts, {time.perf_counter() - began:.0f} s"
            )
    return alerts, deploy_release, generator, sessions, events, passes


_ORACLES: dict[tuple[float, float, float], Any] = {}


def oracle_delay(scenario: Scenario, incident: Incident, generator: TrafficGenerator, weeks: int) -> float | None:
    """Minutes from the onset to the oracle's alarm, within ``ORACLE_WINDOW`` (None: not within it)."""
    from detector.model.oracle import OracleCusum

    before, after = oracle_rates(incident)
    if not 0 < before < after:
        return None
    truth = generator.truth[incident.id]
    exposure = np.array(truth.exposure[:ORACLE_WINDOW], float)
    counts = np.array(truth.affected[:ORACLE_WINDOW], float)
    if not len(exposure):
        return None
    # The stream's typical exposure: its share of sessions once the release (or outage) is fully there.
    share = float(
        np.median(
            exposure
            / np.maximum(
                [scenario.sessions_per_minute(incident_onset(scenario, incident) + i) for i in range(len(exposure))],
                1e-9,
            )
        )
    )
    key = (before, after, round(share, 3))
    if key not in _ORACLES:
        day = np.array([scenario.sessions_per_minute(m) * max(share, 1e-3) for m in range(24 * 60)])
        _ORACLES[key] = OracleCusum.tuned(
            rate_before=before, rate_after=after, exposure_per_minute=day, alarms_per_week=1.0, n_weeks=weeks
        )
    return _ORACLES[key].detection_delay(counts, exposure, 0)


def judge(
    scenario: Scenario, verdicts: list[Verdict], generator: TrafficGenerator, oracle_weeks: int
) -> list[IncidentResult]:
    results = []
    for incident in scenario.incidents:
        onset = incident_onset(scenario, incident)
        found = [v for v in verdicts if v.verdict == "true" and v.detects and v.incident == incident.id]
        first = min(found, key=lambda v: v.alert.minute) if found else None
        results.append(
            IncidentResult(
                incident,
                onset,
                scenario.sessions_per_minute(onset),
                oracle_delay(scenario, incident, generator, oracle_weeks),
                (first.alert.minute + 1 - onset) if first else None,
                first.alert.kind if first else None,
            )
        )
    return results


# -- figures -----------------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def figures(results: list[ScenarioResult]) -> dict[str, Any]:
    verdicts = [v for r in results for v in r.verdicts]
    deploys = sum(len(r.scenario.deployed) for r in results)
    counts = {k: sum(v.verdict == k for v in verdicts) for k in ("true", "repeat", "misattributed", "false")}
    wrong = counts["repeat"] + counts["misattributed"] + counts["false"]
    incidents = [i for r in results for i in r.incidents]
    eligible = [i for i in incidents if i.oracle_delay is not None]
    by_level = {}
    for _low, _high, label in LEVELS:
        cell = [i for i in eligible if level_label(i.level) == label]
        by_level[label] = {
            "incidents": len(cell),
            "recall": sum(i.detected_after is not None for i in cell) / len(cell) if cell else None,
            "recall_60": (
                sum(i.detected_after is not None and i.detected_after <= ORACLE_WINDOW for i in cell) / len(cell)
                if cell
                else None
            ),
        }
    both = [i for i in eligible if i.detected_after is not None]
    ratios = [i.detected_after / i.oracle_delay for i in both if i.oracle_delay]
    browser = [i for i in incidents if i.incident.kind == "browser_bug"]
    return {
        "deploys": deploys,
        "alerts": len(verdicts),
        **counts,
        "wrong_per_100_deploys": 100.0 * wrong / deploys if deploys else None,
        "incidents": len(incidents),
        "oracle_found_60": len(eligible),
        "recall": sum(i.detected_after is not None for i in eligible) / len(eligible) if eligible else None,
        "recall_60": (
            sum(i.detected_after is not None and i.detected_after <= ORACLE_WINDOW for i in eligible) / len(eligible)
            if eligible
            else None
        ),
        "recall_by_level": by_level,
        "ttd_median": _median([i.detected_after for i in both]),
        "oracle_median": _median([i.oracle_delay for i in both if i.oracle_delay is not None]),
        "ttd_ratio_median": _median(ratios),
        "browser_found": [i.detected_after is not None for i in browser],
    }


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_scenario(result: ScenarioResult) -> None:
    scenario = result.scenario
    fig = figures([result])
    print(
        f"\n== {scenario.name} (seed {scenario.seed}, {result.database}): {scenario.minutes} min, "
        f"{len(scenario.deployed)} deploys, {scenario.low:g}-{scenario.high:g} sessions/min, "
        f"{result.sessions} sessions, {result.events} events, {result.passes} passes, {result.seconds:.0f} s"
    )
    print(
        f"{'incident':>12} {'kind':>11} {'release':>10} {'onset':>6} {'/min':>5} {'rate':>6} "
        f"{'oracle':>6} {'ours':>6} {'found as':>16}"
    )
    for i in result.incidents:
        incident = i.incident
        release = scenario.releases[incident.release_from].name if incident.release_from is not None else "-"
        rate = incident.extra_rates[0]
        extra = f" ({incident.segment})" if incident.segment else ""
        print(
            f"{incident.id:>12} {incident.kind:>11} {release:>10} {scenario.clock(i.onset):>6} {i.level:>5.0f} "
            f"{rate:>6.2%} {_fmt(i.oracle_delay, 0):>6} {_fmt(i.detected_after, 0):>6} "
            f"{i.kind_found or 'missed':>16}{extra}"
        )
    print(
        f"alerts: {fig['alerts']} = {fig['true']} true, {fig['repeat']} repeat, {fig['misattributed']} "
        f"misattributed, {fig['false']} false; wrong per 100 deploys {_fmt(fig['wrong_per_100_deploys'])} "
        f"(goal <= 1)"
    )
    print(
        f"recall of oracle-found incidents: {_fmt(fig['recall'], 2)} (within 60 min {_fmt(fig['recall_60'], 2)}); "
        + ", ".join(f"{k}/min: {_fmt(v['recall'], 2)} of {v['incidents']}" for k, v in fig["recall_by_level"].items())
        + f"; ttd/oracle median {_fmt(fig['ttd_ratio_median'], 2)} (goal <= 1.5); browser-only found "
        f"{fig['browser_found']}"
    )
    for verdict in result.verdicts:
        if verdict.verdict != "true":
            a = verdict.alert
            print(f"  {verdict.verdict:>13}: #{a.anomaly_id} {a.kind} at {scenario.clock(a.minute)}: {verdict.reason}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="the short 'quick' history only, a pass every 5 min (a smoke run)"
    )
    parser.add_argument("--scenarios", default="shop-day,busy", help="presets: shop-day, busy, quick, random")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds, each run on every preset")
    parser.add_argument("--random", type=int, default=0, help="also this many random histories (seeds 100, 101...)")
    parser.add_argument("--dense-every", type=int, default=1)
    parser.add_argument("--dense-minutes", type=int, default=30)
    parser.add_argument("--sparse-every", type=int, default=2)
    parser.add_argument("--oracle-weeks", type=int, default=20)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)
    if args.quick:
        args.scenarios, args.random, args.oracle_weeks, args.sparse_every = "quick", 0, 8, 5

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    began = time.perf_counter()
    plan = [(name, int(seed)) for seed in args.seeds.split(",") for name in args.scenarios.split(",")]
    plan += [("random", 100 + k) for k in range(args.random)]
    results: list[ScenarioResult] = []
    with scratch_database(args.database, prefix="detector_history") as url:
        app = App(url)
        try:
            for k, (name, seed) in enumerate(plan):
                scenario = build_scenario(name, seed)
                t0 = time.perf_counter()
                alerts, deploy_release, generator, sessions, events, passes = run_scenario(
                    app,
                    scenario,
                    slug=f"h{k}",
                    dense_every=args.dense_every,
                    dense_minutes=args.dense_minutes,
                    sparse_every=args.sparse_every,
                    log=log,
                )
                verdicts = score_alerts(scenario, alerts, deploy_release)
                result = ScenarioResult(
                    scenario,
                    args.database,
                    verdicts,
                    judge(scenario, verdicts, generator, args.oracle_weeks),
                    sessions,
                    events,
                    passes,
                    time.perf_counter() - t0,
                )
                print_scenario(result)
                results.append(result)
            pass_seconds = sorted(app.pass_seconds)
            print(
                f"passes: {len(pass_seconds)}, median {_fmt(statistics.median(pass_seconds), 3)} s, "
                f"p90 {_fmt(pass_seconds[int(0.9 * (len(pass_seconds) - 1))], 3)} s; digest {app.digest_seconds:.0f} s"
            )
        finally:
            app.close()
    total = figures(results)
    summary = {
        "bench": "release_history",
        "quick": args.quick,
        "database": args.database,
        "scenarios": [f"{r.scenario.name}:{r.scenario.seed}" for r in results],
        "seconds": round(time.perf_counter() - began, 1),
        "pass_seconds_median": statistics.median(pass_seconds) if pass_seconds else None,
        **total,
        "by_scenario": {f"{r.scenario.name}:{r.scenario.seed}": figures([r]) for r in results},
        "wrong_alerts": [
            {"scenario": r.scenario.name, "class": v.verdict, "kind": v.alert.kind, "reason": v.reason}
            for r in results
            for v in r.verdicts
            if v.verdict != "true"
        ],
        "incident_rows": [
            {
                "scenario": r.scenario.name,
                "incident": i.incident.id,
                "kind": i.incident.kind,
                "sessions_per_minute": round(i.level, 1),
                "oracle": i.oracle_delay,
                "ours": i.detected_after,
                "found_as": i.kind_found,
            }
            for r in results
            for i in r.incidents
        ],
        # every alert as read from the API, so a changed scoring rule can be re-applied without a re-run
        "alerts": [
            {"scenario": f"{r.scenario.name}:{r.scenario.seed}", **vars(v.alert), "class": v.verdict}
            for r in results
            for v in r.verdicts
        ],
    }
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main()
