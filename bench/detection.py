"""Detection benchmark: simulated frontend traffic through the real ingestion path, deploys, passes.

    python -m bench.detection [--quick] [--traffic 10,100,1000] [--reps 2] [--deploy-every 60]
                              [--steady-days 7] [--model-weeks 1] [--database sqlite|postgresql]

For each traffic level (sessions started per minute, diurnal) one project lives through a timeline:
a warm-up, then a deploy every ``--deploy-every`` minutes through ``POST /api/v1/projects/{slug}/deploys``.
Deploys alternate between benign ones (some bring harmless new signatures) and bad ones, which cycle
through every (incident, impact) pair of the grid:

* ``seed``: a new TypeError on /billing in ``impact`` of sessions (the seed incident);
* ``rise10x``: a known signature at ``impact / 10`` of sessions rises 10x;
* ``browser_crash``: a new crash in Safari sessions only, ``impact`` of all sessions;
* ``slow``: every app error a little more often, errored sessions +0.2 % of sessions (release level).

Each minute of traffic is one Sentry envelope (a ``sessions`` aggregate and one ``event`` item per
affected session) posted to the real app (``api.app.create_app`` in-process, ``TestClient``), digested
(``digest_all``) before each pass; passes run through ``POST /api/v1/projects/{slug}/detect?at=...``
every minute for ``--dense-minutes`` after a bad deploy until its incident is reported, every
``--sparse-every`` minutes otherwise (a deploy test's crossing is permanent, so a false alert on a benign
deploy is reported by the next sparse pass). The bad release runs until the next deploy (which reverts it).

A detection is a true positive only if the anomaly names the incident's signature (``release_error_rate``
for ``slow``) and the bad deploy. Every other anomaly is a false alert: on a benign deploy, on a bad
deploy but for another signature, or a spike. Time to detect is from the deploy to the first pass
that reported the anomaly. The oracle is a Poisson CUSUM that knows the true before/after rates of the
incident stream, tuned by simulation to one false alarm per week on that one stream, run on the same
minute counts; for new signatures its "before" rate is the detector's null, the floor rate (0.1 %).

The full run adds a week (``--steady-days``) of steady traffic at 10 and 100 sessions/min with no deploy
through the same path (false alerts per project-week), and ``--model-weeks`` of pure-model passes on
frames from ``detector.model.simulate`` at 1,000 sessions/min with 2,000 signatures and benign deploys
every 3 h (labelled "model only"). The last line printed is one JSON object (the summary).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench import detection_traffic as traffic
from bench.detection_traffic import Sig
from bench.scratch_databases import scratch_database

NEW_SIGNATURE_FLOOR = 0.001
INCIDENTS = ("seed", "rise10x", "browser_crash")
SLOW_IMPACT = 0.002


@dataclass
class Incident:
    kind: str
    impact: float
    sig: Sig | None  # the signature a true positive must name (None: release level)
    rate_before: float
    rate_after: float


@dataclass
class DeployRecord:
    index: int
    release: str
    at: datetime
    incident: Incident | None
    deploy_id: int = 0
    harmless: list[Sig] = field(default_factory=list)
    truth_started: list[int] = field(default_factory=list)
    truth_affected: list[int] = field(default_factory=list)
    detected_after: float | None = None  # minutes from deploy to the first pass reporting it
    detected_kind: str | None = None
    oracle_delay: float | None = None


@dataclass
class Alert:
    anomaly_id: int
    kind: str
    title: str
    deploy_id: int | None
    pass_at: datetime
    crossed_at: str | None
    culprit: str
    verdict: str = "false"


class App:
    """The real app in-process: intake, deploys and passes through HTTP, digest as the worker runs it."""

    def __init__(self, database_url: str) -> None:
        from fastapi.testclient import TestClient

        from api.app import create_app
        from detector.config import Settings
        from detector.store.db import make_engine, make_sessionmaker, transaction, upgrade
        from detector.store.projects import create_token

        upgrade(database_url)
        self.settings = Settings(database_url=database_url, detect_schedule="off", default_rate_limit_per_minute=0)
        self.factory = make_sessionmaker(make_engine(database_url))
        with transaction(self.factory) as session:
            token = create_token(session, label="bench")
        self.auth = {"Authorization": f"Bearer {token}"}
        self.client = TestClient(create_app(self.settings))
        self.client.__enter__()
        self.pass_seconds: list[float] = []
        self.digest_seconds = 0.0
        self.posted_events = 0

    def close(self) -> None:
        self.client.__exit__(None, None, None)

    def project(self, slug: str) -> tuple[int, str, str]:
        from detector.store.db import transaction
        from detector.store.projects import create_project

        with transaction(self.factory) as session:
            project = create_project(session, slug=slug, org=self.settings.org)
            return project.id, project.slug, project.public_key

    def post(self, project_id: int, key: str, envelope: bytes) -> None:
        response = self.client.post(f"/api/{project_id}/envelope/?sentry_key={key}", content=envelope)
        if response.status_code != 200:
            raise RuntimeError(f"intake answered {response.status_code}: {response.text[:200]}")

    def digest(self) -> None:
        from detector.intake.digest import digest_all

        began = time.perf_counter()
        digest_all(self.factory)
        self.digest_seconds += time.perf_counter() - began

    def history_deploys(self, project_id: int, deploys: list[tuple[str, datetime]]) -> None:
        """Earlier deploys in one transaction through the service every deploy route calls (no HTTP: they
        only set the detector's deploys-per-week; one request each cost ~10 s of a quick run)."""
        from detector.deploys.service import record_deploy
        from detector.store.db import transaction
        from detector.store.models import Project

        with transaction(self.factory) as session:
            project = session.get(Project, project_id)
            assert project is not None
            for release, at in deploys:
                record_deploy(
                    session,
                    project=project,
                    release=release,
                    environment=traffic.ENVIRONMENT,
                    date_finished=at,
                    source="api",
                )

    def deploy(self, slug: str, release: str, at: datetime) -> int:
        response = self.client.post(
            f"/api/v1/projects/{slug}/deploys",
            headers=self.auth,
            json={"release": release, "environment": traffic.ENVIRONMENT, "finished": at.isoformat()},
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"deploy answered {response.status_code}: {response.text[:200]}")
        return int(response.json()["id"])

    def detect(self, slug: str, at: datetime) -> list[dict[str, Any]]:
        began = time.perf_counter()
        response = self.client.post(f"/api/v1/projects/{slug}/detect", headers=self.auth, params={"at": at.isoformat()})
        self.pass_seconds.append(time.perf_counter() - began)
        if response.status_code != 200:
            raise RuntimeError(f"detect answered {response.status_code}: {response.text[:200]}")
        return [c for c in response.json()["changes"] if c["change"] == "created"]

    def anomaly(self, slug: str, anomaly_id: int) -> dict[str, Any]:
        """The anomaly as the API shows it, plus its signature's culprit (read from the store: the API
        has no signature route) to tell which simulated error it is."""
        from detector.store.models import Signature

        response = self.client.get(f"/api/v1/projects/{slug}/anomalies/{anomaly_id}", headers=self.auth)
        detail = dict(response.json())
        detail["culprit"] = ""
        if detail.get("signature_id") is not None:
            with self.factory() as session:
                signature = session.get(Signature, detail["signature_id"])
                detail["culprit"] = signature.culprit if signature is not None else ""
        return detail


# -- the timeline of one project ---------------------------------------------------------------------


def regressable_pool(impacts: list[float], reps: int) -> dict[float, list[Sig]]:
    """Known signatures at impact/10 of sessions, one per bad deploy that will raise them 10x."""
    pool: dict[float, list[Sig]] = {}
    index = 0
    for impact in impacts:
        pool[impact] = []
        for _ in range(reps):
            pool[impact].append(traffic.existing_signature(f"known{index}", impact / 10.0, index))
            index += 1
    return pool


def plan_deploys(
    *,
    start: datetime,
    count: int,
    every: int,
    impacts: list[float],
    reps: int,
    pool: dict[float, list[Sig]],
    rng: np.random.Generator,
) -> list[DeployRecord]:
    """Benign and bad deploys alternating; bad ones cycle through (incident, impact) and ``slow``."""
    bad: list[tuple[str, float]] = []
    for rep in range(reps):
        for impact in impacts:
            for kind in INCIDENTS:
                bad.append((kind, impact))
        bad.append(("slow", SLOW_IMPACT))
        del rep
    order = rng.permutation(len(bad))
    bad = [bad[i] for i in order]
    records: list[DeployRecord] = []
    used: dict[float, int] = {}
    for i in range(count):
        at = start + timedelta(minutes=every * (i + 1))
        incident = None
        if i % 2 == 1 and bad:
            kind, impact = bad.pop()
            incident = _incident(kind, impact, i, pool, used)
        record = DeployRecord(index=i, release=f"web@1.{i + 1}.0", at=at, incident=incident)
        if incident is None and rng.random() < 0.3:
            record.harmless = [
                traffic.harmless_new(i * 10 + j, float(rng.uniform(0.00005, 0.0003)))
                for j in range(int(rng.integers(1, 3)))
            ]
        records.append(record)
    return records


def _incident(kind: str, impact: float, index: int, pool: dict[float, list[Sig]], used: dict[float, int]) -> Incident:
    if kind == "seed":
        return Incident(kind, impact, traffic.seed_incident(impact, index), NEW_SIGNATURE_FLOOR, impact)
    if kind == "browser_crash":
        return Incident(kind, impact, traffic.browser_crash(impact, index), NEW_SIGNATURE_FLOOR, impact)
    if kind == "rise10x":
        n = used.get(impact, 0)
        used[impact] = n + 1
        known = pool[impact][n]
        return Incident(kind, impact, known.with_rate(impact), impact / 10.0, impact)
    return Incident(kind, impact, None, 0.0, 0.0)  # slow: rates filled in from the catalogue


def release_sigs(
    background: list[Sig], known: list[Sig], record: DeployRecord | None, minutes_since_deploy: int
) -> list[Sig]:
    """The signatures (with rates) of the release running ``minutes_since_deploy`` after its deploy."""
    sigs = []
    incident = record.incident if record else None
    for sig in background:
        rate = sig.rate
        if sig.name == "chunk_load":
            rate += traffic.chunk_load_after_deploy(minutes_since_deploy)
        if incident is not None and incident.kind == "slow" and sig.expected_noise is None:
            app_total = sum(s.rate for s in background if s.expected_noise is None)
            rate += SLOW_IMPACT * sig.rate / app_total
        sigs.append(sig.with_rate(rate) if rate != sig.rate else sig)
    for sig in known:
        if incident is not None and incident.sig is not None and incident.sig.name == sig.name:
            sigs.append(incident.sig)
        else:
            sigs.append(sig)
    if incident is not None and incident.kind in ("seed", "browser_crash") and incident.sig is not None:
        sigs.append(incident.sig)
    if record is not None:
        sigs.extend(record.harmless)
    return sigs


@dataclass
class TimelineResult:
    traffic: float
    minutes: int
    deploys: list[DeployRecord]
    alerts: list[Alert]
    events: int


def run_timeline(
    app: App,
    *,
    traffic_level: float,
    start: datetime,
    warmup: int,
    deploys: list[DeployRecord],
    every: int,
    dense: int,
    sparse: int,
    background: list[Sig],
    known: list[Sig],
    rng: np.random.Generator,
    slug: str,
    log: Any,
    history_deploys: int = 0,
    history_every: int = 60,
) -> TimelineResult:
    project_id, slug, key = app.project(slug)
    initial = "web@1.0.0"  # running before the timeline, so its errors are known at the first deploy
    # Earlier deploys (no traffic is simulated for them) make the detector's deploys-per-week estimate,
    # and so its alpha-spending, that of a project with this cadence for the whole lookback.
    # They end a day before the timeline so none is still watched (deploy_watch_minutes) during it.
    app.history_deploys(
        project_id,
        [(f"web@0.{h}.0", start - timedelta(days=1, minutes=history_every * h)) for h in range(history_deploys, 0, -1)],
    )
    end = (deploys[-1].at + timedelta(minutes=every)) if deploys else start + timedelta(minutes=warmup)
    total = int((end - start).total_seconds() // 60)
    by_minute = {int((d.at - start).total_seconds() // 60): d for d in deploys}
    current: DeployRecord | None = None
    since, found = 0, False
    alerts: list[Alert] = []
    events = 0
    began = time.perf_counter()
    for m in range(total):
        minute = start + timedelta(minutes=m)
        if m in by_minute:
            current = by_minute[m]
            current.deploy_id = app.deploy(slug, current.release, minute)
            since, found = 0, False
        release = current.release if current else initial
        sigs = release_sigs(background, known, current, since)
        minute_traffic = traffic.minute_traffic(
            minute=minute, release=release, expected_sessions=traffic.diurnal(minute, traffic_level), sigs=sigs, rng=rng
        )
        events += sum(minute_traffic.affected.values())
        if current is not None and current.incident is not None:
            current.truth_started.append(minute_traffic.started)
            incident = current.incident
            if incident.sig is not None:
                current.truth_affected.append(minute_traffic.affected.get(incident.sig.name, 0))
            else:  # release level: errored sessions, less the post-deploy ChunkLoadError burst (noise)
                noise = minute_traffic.affected.get("chunk_load", 0)
                current.truth_affected.append(max(minute_traffic.errored - noise, 0))
        app.post(project_id, key, minute_traffic.envelope)
        # Every minute while a bad deploy's incident is not yet found (its time to detect is measured to
        # the minute); otherwise every ``sparse`` minutes. Deploy tests' crossings are permanent, so a
        # false alert on a benign deploy is still reported, by the next sparse pass.
        hunting = current is not None and current.incident is not None and not found
        if (hunting and since < dense) or since % sparse == sparse - 1 or m == total - 1:
            app.digest()  # the intake rows of every minute since the last pass
            at = minute + timedelta(seconds=59)
            for change in app.detect(slug, at):
                detail = app.anomaly(slug, change["anomaly_id"])
                alert = Alert(
                    change["anomaly_id"],
                    detail["kind"],
                    detail["title"],
                    detail["deploy_id"],
                    at,
                    detail.get("crossed_at"),
                    detail["culprit"],
                )
                alerts.append(alert)
                found = found or (current is not None and _names_incident(alert, current))
        since += 1
    log(
        f"  traffic {traffic_level:g}/min: {total} minutes, {events} events, {len(deploys)} deploys, "
        f"{len(alerts)} anomalies, {time.perf_counter() - began:.0f} s"
    )
    return TimelineResult(traffic_level, total, deploys, alerts, events)


def _names_incident(alert: Alert, record: DeployRecord) -> bool:
    """Whether ``alert`` is a true positive for ``record``'s incident (the rule :func:`judge` applies)."""
    incident = record.incident
    if incident is None or alert.deploy_id != record.deploy_id:
        return False
    if incident.sig is None:
        return alert.kind == "release_error_rate"
    return alert.culprit == incident.sig.culprit


def judge(result: TimelineResult) -> None:
    """Mark true positives and fill each bad deploy's detection delay."""
    by_id = {d.deploy_id: d for d in result.deploys}
    signature_level = {a.deploy_id for a in result.alerts if a.kind != "release_error_rate"}
    for alert in result.alerts:
        record = by_id.get(alert.deploy_id or -1)
        if alert.kind == "release_error_rate" and alert.deploy_id in signature_level:
            alert.verdict = "deferred"  # no alert is sent: the signature's alert of that deploy says it
        if record is None or record.incident is None:
            continue
        if alert.kind == "release_error_rate" and alert.verdict == "false":
            alert.verdict = "release_level"  # the bad release's error rate did rise: right deploy, coarser
        incident = record.incident
        expected = incident.sig.culprit if incident.sig is not None else None
        hit = alert.culprit == expected if expected is not None else alert.kind == "release_error_rate"
        if hit:
            alert.verdict = "true"
            delay = (alert.pass_at - record.at).total_seconds() / 60.0
            if record.detected_after is None or delay < record.detected_after:
                record.detected_after = math.ceil(delay - 1e-9)
                record.detected_kind = alert.kind


# -- the oracle ---------------------------------------------------------------------------------------

_ORACLES: dict[tuple[float, float, float], Any] = {}


def oracle_delay(
    record: DeployRecord, traffic_level: float, background: list[Sig], weeks: int, known: list[Sig] | None = None
) -> float | None:
    from detector.model.oracle import OracleCusum

    incident = record.incident
    assert incident is not None
    before, after = incident.rate_before, incident.rate_after
    if incident.kind == "slow":
        # The truth stream is errored sessions less ChunkLoadError ones, of every signature the release
        # runs: the background *and* the known signatures of the 10x-rise pool (left out before
        # 2026-11-27 evening, which understated "before" by ~1-2 % of sessions and had the oracle
        # "detect" the slow rise in minutes).
        # The simulated errored count is the sum of the signatures' affected sessions, so its rate is the
        # sum of their rates, and the slow release adds exactly SLOW_IMPACT to it.
        before = sum(s.rate for s in [*background, *(known or [])] if s.name != "chunk_load")
        after = before + SLOW_IMPACT
    if not 0 < before < after:
        return None
    key = (before, after, traffic_level)
    if key not in _ORACLES:
        day = [
            traffic.diurnal(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m), traffic_level)
            for m in range(24 * 60)
        ]
        _ORACLES[key] = OracleCusum.tuned(
            rate_before=before, rate_after=after, exposure_per_minute=np.array(day), alarms_per_week=1.0, n_weeks=weeks
        )
    return _ORACLES[key].detection_delay(
        np.array(record.truth_affected, float), np.array(record.truth_started, float), 0
    )


# -- summaries ----------------------------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    # "higher": with two deploys per cell the median is the later of the two
    return float(np.quantile(np.array(values), q, method="higher"))


def cell_rows(results: list[TimelineResult], window: int) -> list[dict[str, Any]]:
    rows = []
    cells: dict[tuple[float, str, float], list[DeployRecord]] = {}
    for result in results:
        for record in result.deploys:
            if record.incident is not None:
                cells.setdefault((result.traffic, record.incident.kind, record.incident.impact), []).append(record)
    for (level, kind, impact), records in sorted(cells.items()):
        delays = [r.detected_after for r in records if r.detected_after is not None]
        oracle = [r.oracle_delay for r in records if r.oracle_delay is not None]
        ratios = [r.detected_after / r.oracle_delay for r in records if r.detected_after is not None and r.oracle_delay]
        rows.append(
            {
                "traffic": level,
                "incident": kind,
                "impact": impact,
                "deploys": len(records),
                "recall": len(delays) / len(records),
                "recall_30min": sum(d <= 30 for d in delays) / len(records),
                "ttd_median": _quantile(delays, 0.5),
                "ttd_p90": _quantile(delays, 0.9),
                "oracle_median": _quantile(oracle, 0.5),
                "ratio_median": (statistics.median(ratios) if ratios else None),
                "window_minutes": window,
            }
        )
    return rows


def false_alert_figures(results: list[TimelineResult]) -> dict[str, Any]:
    benign = sum(1 for r in results for d in r.deploys if d.incident is None)
    false = [a for r in results for a in r.alerts if a.verdict == "false"]
    by_id = {d.deploy_id: d for r in results for d in r.deploys}
    on_benign = [a for a in false if a.deploy_id in by_id and by_id[a.deploy_id].incident is None]
    weeks = sum(r.minutes for r in results) / (7 * 24 * 60)
    return {
        "benign_deploys": benign,
        "false_on_benign": len(on_benign),
        "false_per_100_benign": 100.0 * len(on_benign) / benign if benign else None,
        "false_total": len(false),
        "project_weeks": weeks,
        "false_per_project_week": len(false) / weeks if weeks else None,
        "false_alerts": [f"{a.kind}: {a.title[:70]} (deploy {a.deploy_id})" for a in false],
    }


# -- steady traffic and the pure-model week ----------------------------------------------------------------


def model_week(weeks: float, seed: int, log: Any, every: int = 20) -> dict[str, Any]:
    """False alerts per project-week of the pure model (no intake) at 1,000 sessions/min, a pass every
    ``every`` minutes over the last 24 h (as the loader gives it)."""
    import pandas as pd

    from detector.model import DetectorConfig, detect_anomalies
    from detector.model.simulate import SimDeploy, SimSignature, simulate_project

    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-10-01", tz="UTC")
    length = pd.Timedelta(days=1 + 7 * weeks)
    rates = np.minimum(rng.lognormal(mean=-9.0, sigma=1.5, size=2000), 0.02)
    sigs = [SimSignature(i + 1, float(r)) for i, r in enumerate(rates)]
    deploys = [
        SimDeploy(i + 1, f"web@{i + 1}", start + pd.Timedelta(hours=3 * (i + 1)), rollout_minutes=10)
        for i in range(int(length / pd.Timedelta(hours=3)) - 1)
    ]
    data = simulate_project(
        start=start, end=start + length, sessions_per_minute=1000.0, signatures=sigs, deploys=deploys, rng=rng
    )
    config = DetectorConfig()
    keys: dict[str, Any] = {}
    at = start + pd.Timedelta(days=1)
    passes = 0
    sig_counts = data["sig_counts"].sort_values("minute", kind="stable").reset_index(drop=True)
    session_counts = data["session_counts"].sort_values("minute", kind="stable").reset_index(drop=True)
    sig_minutes = sig_counts["minute"].dt.tz_convert(None).to_numpy()
    ses_minutes = session_counts["minute"].dt.tz_convert(None).to_numpy()
    began = time.perf_counter()
    while at < start + length:
        low = (at - pd.Timedelta(hours=24)).tz_convert(None).to_datetime64()
        high = at.tz_convert(None).to_datetime64()
        frames = dict(data)
        frames["sig_counts"] = sig_counts.iloc[
            np.searchsorted(sig_minutes, low) : np.searchsorted(sig_minutes, high, side="right")
        ]
        frames["session_counts"] = session_counts.iloc[
            np.searchsorted(ses_minutes, low) : np.searchsorted(ses_minutes, high, side="right")
        ]
        for finding in detect_anomalies(**frames, at=at, config=config):
            keys.setdefault(finding.key, finding)
        passes += 1
        at += pd.Timedelta(minutes=every)
    log(f"  model-only week(s): {passes} passes in {time.perf_counter() - began:.0f} s, {len(keys)} findings")
    return {
        "weeks": weeks,
        "deploys": len(deploys),
        "signatures": len(sigs),
        "passes": passes,
        "every": every,
        "false_alerts": len(keys),
        "false_per_week": len(keys) / weeks,
        "by_kind": {
            k: sum(f.kind == k for f in keys.values())
            for k in ("new_signature", "regression", "release_error_rate", "spike")
        },
    }


def model_delays(
    *, levels: list[float], impacts: list[float], reps: int, oracle_weeks: int, seed: int, log: Any, watch: int = 60
) -> list[dict[str, Any]]:
    """Time to detect against the oracle's on pure-model frames (``detector.model.simulate``), many
    deploys per cell: the grid's cells have 2 deploys each, too few for a ratio of medians.

    Per deploy: 26 h of a 40-signature Zipf background (1 % of sessions), diurnal traffic, then a
    deploy (thresholds of an hourly cadence, ``deploys_per_week=168``) whose release carries a new
    signature at ``impact`` (``seed``; the browser crash is the same stream to the model) or raises a
    known one from ``impact / 10`` to ``impact`` (``rise10x``). One pass ``watch`` minutes after the
    deploy; deploy tests are causal, so its ``crossed_at`` is when a pass every minute would first
    have reported it. The oracle runs on the same minute counts, as in the grid."""
    import pandas as pd

    from detector.model import DetectorConfig, detect_anomalies
    from detector.model.oracle import OracleCusum
    from detector.model.simulate import SimDeploy, SimSignature, diurnal_sessions, simulate_project

    config = DetectorConfig(deploys_per_week=168.0)
    harmonic = sum(1.0 / k for k in range(1, 41))
    background = [SimSignature(i, 0.01 / (i * harmonic)) for i in range(1, 41)]
    deployed = pd.Timestamp("2026-11-27 10:00", tz="UTC")
    day = diurnal_sessions(pd.date_range("2026-01-01", periods=24 * 60, freq="min", tz="UTC"), 1.0)
    post = pd.date_range(deployed, periods=watch, freq="min", tz="UTC")
    oracles: dict[tuple[float, float, float], OracleCusum] = {}
    rows = []
    began = time.perf_counter()
    for level in levels:
        for impact in impacts:
            for kind in ("seed", "rise10x"):
                before = impact / 10.0 if kind == "rise10x" else NEW_SIGNATURE_FLOOR
                key = (before, impact, level)
                if not before < impact:
                    continue  # a new signature at the null's floor rate: nothing for the oracle to detect
                if key not in oracles:
                    oracles[key] = OracleCusum.tuned(
                        rate_before=before,
                        rate_after=impact,
                        exposure_per_minute=day * level,
                        alarms_per_week=1.0,
                        n_weeks=oracle_weeks,
                    )
                ours, oracle = [], []
                for rep in range(reps):
                    rng = np.random.default_rng([seed, int(level), int(impact * 1e6), rep])
                    incident = SimSignature(900, impact / 10.0 if kind == "rise10x" else 0.0, {"web@2": impact})
                    data = simulate_project(
                        start=deployed - pd.Timedelta(hours=26),
                        end=deployed + pd.Timedelta(minutes=watch),
                        sessions_per_minute=level,
                        signatures=[*background, incident],
                        deploys=[SimDeploy(7, "web@2", deployed)],
                        rng=rng,
                    )
                    at = deployed + pd.Timedelta(minutes=watch) - pd.Timedelta(seconds=1)
                    found = [
                        f
                        for f in detect_anomalies(**data, at=at, config=config)
                        if f.signature_id == 900 and f.deploy_id == 7
                    ]
                    ours.append((found[0].crossed_at - deployed) / pd.Timedelta(minutes=1) + 1 if found else None)
                    sig, ses = data["sig_counts"], data["session_counts"]
                    counts = (
                        sig[(sig["signature_id"] == 900) & (sig["release"] == "web@2")]
                        .set_index("minute")["sessions"]
                        .reindex(post, fill_value=0)
                        .to_numpy(float)
                    )
                    started = (
                        ses[ses["release"] == "web@2"]
                        .set_index("minute")["started"]
                        .reindex(post, fill_value=0)
                        .to_numpy(float)
                    )
                    oracle.append(oracles[key].detection_delay(counts, started, 0))
                both = [(a, b) for a, b in zip(ours, oracle, strict=True) if a is not None and b is not None]
                rows.append(
                    {
                        "traffic": level,
                        "incident": kind,
                        "impact": impact,
                        "deploys": reps,
                        "recall": sum(a is not None for a in ours) / reps,
                        "oracle_recall": sum(b is not None for b in oracle) / reps,
                        "ttd_median": _quantile([a for a in ours if a is not None], 0.5),
                        "oracle_median": _quantile([b for b in oracle if b is not None], 0.5),
                        "ratio_median": statistics.median(a / b for a, b in both) if both else None,
                        "both_detected": len(both),
                    }
                )
    log(f"  model-only delays: {len(rows)} cells x {reps} deploys in {time.perf_counter() - began:.0f} s")
    return rows


def print_delays(rows: list[dict[str, Any]]) -> None:
    print("model only, time to detect vs oracle (deploys where both detected within the hour):")
    print(
        f"{'traffic':>8} {'incident':>9} {'impact':>7} {'n':>3} {'recall':>6} {'oracle':>6} "
        f"{'ttd50':>6} {'oracle50':>8} {'ratio50':>7}"
    )
    for row in rows:
        print(
            f"{row['traffic']:>8g} {row['incident']:>9} {row['impact']:>7.2%} {row['deploys']:>3} "
            f"{row['recall']:>6.0%} {row['oracle_recall']:>6.0%} {_fmt(row['ttd_median'], 0):>6} "
            f"{_fmt(row['oracle_median'], 0):>8} {_fmt(row['ratio_median'], 2):>7}"
        )
    sys.stdout.flush()


# -- main --------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_grid(rows: list[dict[str, Any]], false: dict[str, Any]) -> None:
    print(
        f"{'traffic':>8} {'incident':>14} {'impact':>7} {'n':>3} {'recall':>6} {'<=30m':>6} "
        f"{'ttd50':>6} {'ttd90':>6} {'oracle50':>8} {'ratio50':>7}"
    )
    for row in rows:
        print(
            f"{row['traffic']:>8g} {row['incident']:>14} {row['impact']:>7.2%} {row['deploys']:>3} "
            f"{row['recall']:>6.0%} {row['recall_30min']:>6.0%} {_fmt(row['ttd_median'], 0):>6} "
            f"{_fmt(row['ttd_p90'], 0):>6} {_fmt(row['oracle_median'], 0):>8} {_fmt(row['ratio_median'], 2):>7}"
        )
    print(
        f"false alerts: {false['false_on_benign']} on {false['benign_deploys']} benign deploys "
        f"({_fmt(false['false_per_100_benign'])} per 100), {false['false_total']} in all over "
        f"{false['project_weeks']:.2f} project-weeks ({_fmt(false['false_per_project_week'], 2)} per week)"
    )
    for line in false["false_alerts"]:
        print(f"  false: {line}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 sessions/min, a few deploys, < 1 minute")
    parser.add_argument("--parts", default="grid,steady,model,delays", help="any of grid, steady, model, delays")
    parser.add_argument("--delay-reps", type=int, default=20, help="deploys per cell of the model-only delays")
    parser.add_argument("--traffic", default="10,100,1000")
    parser.add_argument("--impacts", default="0.001,0.01,0.1")
    parser.add_argument("--reps", type=int, default=2, help="bad deploys per (incident, impact) and traffic")
    parser.add_argument("--deploy-every", type=int, default=60, help="minutes between deploys")
    parser.add_argument("--warmup", type=int, default=120, help="minutes of traffic before the first deploy")
    parser.add_argument("--dense-minutes", type=int, default=30)
    parser.add_argument("--sparse-every", type=int, default=10)
    parser.add_argument("--steady-days", type=float, default=7.0)
    parser.add_argument("--steady-traffic", default="10,100")
    parser.add_argument("--model-weeks", type=float, default=1.0)
    parser.add_argument("--oracle-weeks", type=int, default=20)
    parser.add_argument(
        "--history-days",
        type=float,
        default=14.0,
        help="days of earlier deploys (without traffic) before each timeline",
    )
    parser.add_argument("--history-every", type=int, default=60, help="minutes between those deploys")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if args.quick:
        args.traffic, args.impacts, args.reps = "100", "0.05", 1
        args.deploy_every, args.warmup, args.dense_minutes = 20, 60, 20
        args.oracle_weeks = 4
        parts = {"grid"}

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    began = time.perf_counter()
    history = int(max(args.history_days - 1.0, 0.0) * 24 * 60 / args.history_every)
    levels = [float(x) for x in args.traffic.split(",")]
    impacts = [float(x) for x in args.impacts.split(",")]
    rng = np.random.default_rng(args.seed)
    background = traffic.background_catalogue()
    pool = regressable_pool(impacts, args.reps)
    known = [s for sigs in pool.values() for s in sigs]
    results: list[TimelineResult] = []
    steady: list[TimelineResult] = []
    rows: list[dict[str, Any]] = []
    false: dict[str, Any] = {}
    steady_false: dict[str, Any] | None = None
    pass_seconds: list[float] = []
    with scratch_database(args.database) as url:
        app = App(url)
        try:
            n_bad = args.reps * (len(impacts) * len(INCIDENTS) + 1)
            for i, level in enumerate(levels if "grid" in parts else []):
                total = args.warmup + 2 * n_bad * args.deploy_every + args.deploy_every
                start = _aligned_start(total)
                deploys = plan_deploys(
                    start=start + timedelta(minutes=args.warmup - args.deploy_every),
                    count=2 * n_bad,
                    every=args.deploy_every,
                    impacts=impacts,
                    reps=args.reps,
                    pool=pool,
                    rng=rng,
                )
                result = run_timeline(
                    app,
                    traffic_level=level,
                    start=start,
                    warmup=args.warmup,
                    deploys=deploys,
                    every=args.deploy_every,
                    dense=args.dense_minutes,
                    sparse=args.sparse_every,
                    background=background,
                    known=known,
                    rng=rng,
                    slug=f"t{i}",
                    log=log,
                    history_deploys=history,
                    history_every=args.history_every,
                )
                judge(result)
                for record in result.deploys:
                    if record.incident is not None:
                        record.oracle_delay = oracle_delay(record, level, background, args.oracle_weeks, known)
                results.append(result)
            if results:
                rows = cell_rows(results, args.deploy_every)
                false = false_alert_figures(results)
                print_grid(rows, false)
            for i, level in enumerate(args.steady_traffic.split(",") if "steady" in parts else []):
                minutes = int(args.steady_days * 24 * 60)
                steady.append(
                    run_timeline(
                        app,
                        traffic_level=float(level),
                        start=_aligned_start(minutes),
                        warmup=minutes,
                        deploys=[],
                        every=args.deploy_every,
                        dense=0,
                        sparse=args.sparse_every,
                        background=background,
                        known=known,
                        rng=rng,
                        slug=f"steady{i}",
                        log=log,
                        history_deploys=history,
                        history_every=args.history_every,
                    )
                )
            if steady:
                steady_false = false_alert_figures(steady)
                print(
                    f"steady traffic ({args.steady_traffic} sessions/min, no deploy, real path, a pass every "
                    f"{args.sparse_every} min): {steady_false['false_total']} false alerts over "
                    f"{steady_false['project_weeks']:.2f} project-weeks"
                )
                for line in steady_false["false_alerts"]:
                    print(f"  false: {line}")
            pass_seconds = sorted(app.pass_seconds)
            print(
                f"passes: {len(pass_seconds)}, median {_fmt(_quantile(pass_seconds, 0.5), 3)} s, "
                f"p90 {_fmt(_quantile(pass_seconds, 0.9), 3)} s; digest {app.digest_seconds:.0f} s",
                flush=True,
            )
        finally:
            app.close()
    delays = (
        model_delays(
            levels=levels,
            impacts=impacts,
            reps=args.delay_reps,
            oracle_weeks=args.oracle_weeks,
            seed=args.seed,
            log=log,
        )
        if "delays" in parts
        else []
    )
    if delays:
        print_delays(delays)
    model = model_week(args.model_weeks, args.seed, log) if "model" in parts and args.model_weeks > 0 else None
    if model:
        print(
            f"model only (no intake), 1,000 sessions/min, 2,000 signatures, deploy every 3 h, a pass every "
            f"{model['every']} min: {model['false_alerts']} false alerts in {model['weeks']:g} week(s) "
            f"{model['by_kind']}"
        )

    seed_cells = [r for r in rows if r["incident"] == "seed" and r["traffic"] == 100.0]
    recall_cells = [r for r in rows if r["impact"] >= 0.01 and r["traffic"] >= 100 and r["incident"] in INCIDENTS]
    recall_hits = sum(r["recall"] * r["deploys"] for r in recall_cells)
    recall_total = sum(r["deploys"] for r in recall_cells)
    ratios = [r["ratio_median"] for r in rows if r["ratio_median"] is not None]
    summary = {
        "bench": "detection",
        "quick": args.quick,
        "database": args.database,
        "parts": sorted(parts),
        "seconds": round(time.perf_counter() - began, 1),
        "seed_100_ttd_p90_max": max((r["ttd_p90"] or math.inf for r in seed_cells), default=None),
        "recall_ge1pct_ge100": recall_hits / recall_total if recall_total else None,
        "false_per_100_benign": false.get("false_per_100_benign"),
        "false_per_project_week": false.get("false_per_project_week"),
        "steady_false_per_project_week": steady_false["false_per_project_week"] if steady_false else None,
        "model_false_per_week": model["false_per_week"] if model else None,
        "ratio_median": statistics.median(ratios) if ratios else None,
        "pass_seconds_median": _quantile(pass_seconds, 0.5),
        "model_delay_ratio_median": (
            statistics.median(r["ratio_median"] for r in delays if r["ratio_median"])
            if any(r["ratio_median"] for r in delays)
            else None
        ),
        "cells": rows,
        "model_delay_cells": delays,
    }
    print(json.dumps(summary, default=str))
    return summary


def _aligned_start(total_minutes: int) -> datetime:
    """A start so the timeline ends an hour ago (event timestamps in the past are honoured)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=total_minutes + 60)


if __name__ == "__main__":
    main()
