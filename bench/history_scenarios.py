"""Release histories like a real team's, for `bench.release_history`: the scenarios, their traffic and the
scoring of every alert.

A scenario is drawn from a seed: a diurnal traffic curve, a sequence of releases (deployed at once or as
canaries 5 % -> 25 % -> 100 %), long-lived tabs that keep a small share of sessions on superseded releases
for hours, browser segments (family + major version, from the User-Agent) and incidents:

* ``new_bug``: a new signature brought by one release, present in every later release until one fixes it;
* ``regression``: a known signature raised several times by one release, until a later one fixes it;
* ``browser_bug``: a new crash in one browser segment (2-5 % of sessions) of one release onwards;
* ``outage``: a backend outage, 5xx and network errors hitting every release alike, at a random time
  (one of them 30-180 minutes after a deploy).

Around them: a Zipf tail of background app errors, the noise every frontend reports (ResizeObserver,
extensions, third-party scripts, bots), a ChunkLoadError burst after every deploy, and rare harmless new
signatures some benign releases bring.

The pure parts (scenario, truth, scoring) live here so they can be tested without a database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from bench import detection_traffic as traffic
from bench.detection_traffic import Sig

NEW_SIGNATURE_FLOOR = 0.001
"""The detector's null rate for a signature it has never seen (as `bench.detection` uses it): an oracle
watching a new signature tests against it."""

ENVIRONMENT = traffic.ENVIRONMENT
FAST_RELOAD_SHARE = 0.5  # share of a superseded release's sessions that move on within minutes (reloads)
FAST_RELOAD_MINUTES = 6.0
TAIL_HORIZON_MINUTES = 16 * 60  # a long-lived tab's share is cut off after this long


@dataclass(frozen=True)
class Segment:
    """A browser family and major version, as the detector parses it from the User-Agent."""

    name: str  # "Safari 16"
    share: float
    user_agent: str


SEGMENTS: tuple[Segment, ...] = (
    Segment(
        "Chrome 131",
        0.38,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    ),
    Segment(
        "Chrome 130",
        0.14,
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/130.0.0.0 Mobile Safari/537.36",
    ),
    Segment(
        "Chrome 109",
        0.03,
        "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/109.0.0.0 Safari/537.36",
    ),
    Segment(
        "Edge 131",
        0.08,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    ),
    Segment(
        "Safari 18",
        0.12,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/18.1 Safari/605.1.15",
    ),
    Segment(
        "Safari 17",
        0.06,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 13_6) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.6 Safari/605.1.15",
    ),
    Segment(
        "Safari 16",
        0.03,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 12_6) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/16.6 Safari/605.1.15",
    ),
    Segment("Firefox 132", 0.09, "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"),
    Segment("Firefox 115", 0.04, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0"),
    Segment(
        "Samsung Internet 26",
        0.03,
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like "
        "Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    ),
)
SMALL_SEGMENTS = tuple(s.name for s in SEGMENTS if 0.02 <= s.share <= 0.05)


@dataclass(frozen=True)
class Release:
    """One release; ``steps`` are (minutes after its deploy, target share of new sessions)."""

    index: int
    name: str
    deploy_minute: int  # negative for the release running before the timeline
    steps: tuple[tuple[int, float], ...] = ((0, 1.0),)
    harmless: tuple[Sig, ...] = ()

    def target_share(self, minutes_since_deploy: int) -> float:
        share = 0.0
        for offset, value in self.steps:
            if minutes_since_deploy >= offset:
                share = value
        return share


@dataclass(frozen=True)
class Incident:
    """A real problem the detector should report once, on the right deploy (or as a spike with no deploy)."""

    id: str
    kind: str  # new_bug, regression, browser_bug, outage
    sigs: tuple[Sig, ...]  # the signatures a true alert may name (an outage raises two)
    extra_rates: tuple[float, ...]  # added to each signature's rate per session while active
    base_rates: tuple[float, ...]  # each signature's rate before
    release_from: int | None = None  # the release that brings it (deploy incidents)
    release_fixed: int | None = None  # the release that fixes it (None: never in this history)
    segment: str | None = None  # browser_bug: the only segment it hits
    start_minute: int | None = None  # outage
    end_minute: int | None = None

    @property
    def is_outage(self) -> bool:
        return self.kind == "outage"

    def present_in(self, release: int) -> bool:
        assert self.release_from is not None
        return release >= self.release_from and (self.release_fixed is None or release < self.release_fixed)

    def active_at(self, minute: int) -> bool:
        assert self.start_minute is not None and self.end_minute is not None
        return self.start_minute <= minute < self.end_minute


def _diurnal(preset: dict[str, Any], minute: int) -> float:
    """Expected sessions started in ``minute``: ``low`` at 04:00, ``high`` at 16:00 (a cosine between)."""
    hour = (float(preset["start_hour"]) + minute / 60.0) % 24.0
    wave = (1.0 + np.cos(2 * np.pi * (hour - 16.0) / 24.0)) / 2.0
    return float(preset["low"] + (float(preset["high"]) - float(preset["low"])) * wave)


@dataclass
class Scenario:
    name: str
    seed: int
    minutes: int
    low: float  # sessions/min at the diurnal trough (04:00 of the timeline's clock)
    high: float  # ... and at its peak (16:00)
    start_hour: float  # clock hour of minute 0
    releases: list[Release]
    incidents: list[Incident]
    background: list[Sig]
    tab_share: float = 0.04  # share of a superseded release's sessions that stay on it for hours
    tab_minutes: float = 180.0  # ... decaying with this time constant
    cadence_minutes: float = 144.0  # mean minutes between deploys (the earlier history's cadence)

    def sessions_per_minute(self, minute: int) -> float:
        return _diurnal({"low": self.low, "high": self.high, "start_hour": self.start_hour}, minute)

    def clock(self, minute: int) -> str:
        """Clock time of ``minute``, with the day of the timeline (day 1 is the day it starts)."""
        total = int(self.start_hour * 60 + minute)
        return f"d{total // 1440 + 1} {(total // 60) % 24:02d}:{total % 60:02d}"

    @property
    def deployed(self) -> list[Release]:
        """The releases deployed during the timeline (all but the initial one)."""
        return [r for r in self.releases if r.deploy_minute >= 0]

    def release_shares(self) -> np.ndarray:
        """Share of new sessions on each release, each minute: (releases, minutes)."""
        n, t = len(self.releases), self.minutes
        target = np.zeros((n, t))
        for minute in range(t):
            shares = np.zeros(n)
            shares[0] = 1.0
            for release in self.releases[1:]:
                if release.deploy_minute > minute:
                    break
                s = release.target_share(minute - release.deploy_minute)
                shares *= 1.0 - s
                shares[release.index] = s
            target[:, minute] = shares
        # Tabs opened on a release keep it after it loses new page loads: each drop of its target share
        # leaves a tail, most of it gone within minutes (reloads), a small part for hours (long-lived tabs).
        lag = np.arange(1, min(TAIL_HORIZON_MINUTES, t) + 1, dtype=float)
        kernel = FAST_RELOAD_SHARE * np.exp(-lag / FAST_RELOAD_MINUTES) + self.tab_share * np.exp(
            -lag / self.tab_minutes
        )
        weights = target.copy()
        for r in range(n):
            previous = np.concatenate([[target[r, 0]], target[r, :-1]])
            drops = np.maximum(previous - target[r], 0.0)
            if drops.any():
                weights[r] += np.convolve(drops, np.concatenate([[0.0], kernel]))[:t]
        return weights / weights.sum(axis=0, keepdims=True)


# -- building scenarios ---------------------------------------------------------------------------------


def _bug_sig(index: int, rate: float) -> Sig:
    return Sig(
        f"bug{index}",
        "TypeError",
        f"Cannot read properties of undefined (reading 'discount{index}')",
        (("src/main.js", "run", 9), (f"src/checkout/Promo{index}.js", f"applyPromo{index}", 12 + index)),
        rate,
        route="/checkout",
    )


def _crash_sig(index: int, rate: float) -> Sig:
    return Sig(
        f"crash{index}",
        "TypeError",
        f"structuredClone{index} is not a function",
        (("src/main.js", "run", 9), ("src/state/snapshot.js", f"snapshotState{index}", 40 + index)),
        rate,
    )


def _outage_sigs(index: int) -> tuple[Sig, Sig]:
    api = Sig(
        f"api5xx{index}",
        "Error",
        f"Request to /api/orders{index} failed with 503",
        (("src/main.js", "run", 9), ("src/api/orders.js", f"loadOrders{index}", 21)),
        0.0002,
        route="/account",
    )
    network = Sig(
        f"netfail{index}",
        "TypeError",
        "Failed to fetch",
        (("src/api/http.js", f"fetchJson{index}", 7),),
        0.0005,
        expected_noise="network",
    )
    return api, network


def _deploy_times(
    rng: np.random.Generator, *, cadence: str, count: int, warmup: int, start_hour: float, spacing: float
) -> list[int]:
    """Deploy minutes: ``around_the_clock`` spreads them over the day with jitter, ``daytime`` puts
    them on the hour from 08:00 to 18:00 (skipping a few hours at random)."""
    if cadence == "around_the_clock":
        times = [int(warmup + i * spacing + rng.uniform(-0.25, 0.25) * spacing) for i in range(count)]
        return sorted(set(max(warmup, t) for t in times))
    times = []
    minute = warmup
    while len(times) < count:
        hour = (start_hour + minute / 60.0) % 24.0
        if 8.0 <= hour < 18.5 and rng.random() < 0.9:
            times.append(minute + int(rng.integers(0, 6)))
        minute += 60
    return times


PRESETS: dict[str, dict[str, Any]] = {
    # Ten releases around the clock, diurnal 10-70 sessions/min, one outage, long-lived tabs, noise.
    "shop-day": {
        "releases": 10,
        "cadence": "around_the_clock",
        "spacing": 144,
        "warmup": 180,
        "low": 10.0,
        "high": 70.0,
        "start_hour": 9.0,
        "canary": False,
        "new_bugs": 2,
        "regressions": 1,
        "browser_bugs": 1,
        "outages": 1,
        "tail": 120,
        "night_bug": True,
    },
    # Hourly day-time deploys as canaries 5 % -> 25 % -> 100 %, up to 250 sessions/min, ~19 releases in 44 h.
    "busy": {
        "releases": 19,
        "cadence": "daytime",
        "spacing": 60,
        "warmup": 480,
        "low": 25.0,
        "high": 250.0,
        "start_hour": 0.0,
        "canary": True,
        "new_bugs": 3,
        "regressions": 1,
        "browser_bugs": 1,
        "outages": 2,
        "tail": 240,
    },
    # A short history for a smoke run: four releases, one bug fixed two releases later, a browser bug, an outage.
    "quick": {
        "releases": 4,
        "cadence": "around_the_clock",
        "spacing": 90,
        "warmup": 90,
        "low": 40.0,
        "high": 120.0,
        "start_hour": 10.0,
        "canary": False,
        "new_bugs": 1,
        "regressions": 0,
        "browser_bugs": 1,
        "outages": 1,
        "tail": 90,
    },
}


def random_preset(rng: np.random.Generator) -> dict[str, Any]:
    """A preset drawn at random: cadence, traffic and incident counts."""
    cadence = str(rng.choice(["around_the_clock", "daytime"]))
    releases = int(rng.integers(6, 16))
    high = float(rng.choice([40.0, 80.0, 150.0, 250.0]))
    return {
        "releases": releases,
        "cadence": cadence,
        "spacing": int(rng.integers(60, 180)) if cadence == "around_the_clock" else 60,
        "warmup": 150,
        "low": high / float(rng.uniform(3, 7)),
        "high": high,
        "start_hour": float(rng.integers(0, 24)),
        "canary": bool(rng.random() < 0.5),
        "new_bugs": int(rng.integers(1, 4)),
        "regressions": int(rng.integers(0, 2)),
        "browser_bugs": 1,
        "outages": int(rng.integers(1, 3)),
        "tail": 150,
    }


def build_scenario(name: str, seed: int) -> Scenario:
    """The scenario of preset ``name`` (or ``random``) for ``seed``: same seed, same history."""
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    preset = random_preset(rng) if name == "random" else PRESETS[name]
    background = traffic.background_catalogue()
    warmup = int(preset["warmup"])
    times = _deploy_times(
        rng,
        cadence=preset["cadence"],
        count=int(preset["releases"]),
        warmup=warmup,
        start_hour=float(preset["start_hour"]),
        spacing=float(preset["spacing"]),
    )
    tail = preset["tail"] if preset["tail"] is not None else 90
    minutes = times[-1] + int(tail) + 60
    canary = ((0, 0.05), (15, 0.25), (30, 1.0))
    releases = [Release(0, "web@1.0.0", -24 * 60)]
    for i, at in enumerate(times, start=1):
        harmless: tuple[Sig, ...] = ()
        if rng.random() < 0.3:  # a benign release bringing a rare harmless new error (below the floor rate)
            harmless = (traffic.harmless_new(i, float(rng.uniform(0.00005, 0.0003))),)
        releases.append(Release(i, f"web@1.{i}.0", at, canary if preset["canary"] else ((0, 1.0),), harmless))
    n = len(releases) - 1

    incidents: list[Incident] = []
    # Deploy incidents on distinct releases (the first and last release stay benign when there is room).
    candidates = list(range(1, n + 1)) if n < 4 else list(range(2, n))
    kinds = (
        ["new_bug"] * preset["new_bugs"]
        + ["regression"] * preset["regressions"]
        + ["browser_bug"] * preset["browser_bugs"]
    )
    chosen = rng.choice(candidates, size=min(len(kinds), len(candidates)), replace=False)
    app_sigs = [s for s in background if s.expected_noise is None]
    for k, (kind, release) in enumerate(zip(kinds, sorted(int(c) for c in chosen), strict=False)):
        fixed_after = int(rng.integers(1, 4))
        fixed = release + fixed_after if release + fixed_after <= n else None
        if kind == "new_bug":
            rate = float(rng.choice([0.01, 0.02, 0.04]))
            incidents.append(Incident(f"bug{k}", kind, (_bug_sig(k, 0.0),), (rate,), (0.0,), release, fixed))
        elif kind == "regression":
            known = app_sigs[int(rng.integers(2, 8))]  # a known error at 0.04-0.15 % of sessions
            factor = float(rng.choice([5.0, 10.0]))
            incidents.append(
                Incident(
                    f"regression{k}", kind, (known,), (known.rate * (factor - 1.0),), (known.rate,), release, fixed
                )
            )
        else:
            segment = str(rng.choice(SMALL_SEGMENTS))
            incidents.append(
                Incident(f"browser{k}", kind, (_crash_sig(k, 0.0),), (0.04,), (0.0,), release, fixed, segment=segment)
            )
    if preset.get("night_bug"):
        # Issue 14's case 3: a 1 % bug deployed when traffic is lowest (about 10 sessions/min at night),
        # fixed by the next release.
        taken = {i.release_from for i in incidents}
        free = [r for r in range(1, n + 1) if r not in taken]
        if free:
            release = min(free, key=lambda r: _diurnal(preset, releases[r].deploy_minute))
            k = len(incidents)
            incidents.append(
                Incident(
                    f"bug{k}",
                    "new_bug",
                    (_bug_sig(k, 0.0),),
                    (0.01,),
                    (0.0,),
                    release,
                    release + 1 if release < n else None,
                )
            )
    for k in range(int(preset["outages"])):
        api, network = _outage_sigs(k)
        background += [api, network]  # backends fail now and then: both are known before the outage
        if k == 0:  # one outage 30-180 minutes after a deploy
            after = times[int(rng.integers(0, len(times)))]
            start = after + int(rng.integers(30, 181))
        else:
            start = int(rng.integers(warmup, minutes - 120))
        duration = int(rng.integers(30, 121))
        rate = float(rng.choice([0.02, 0.05]))
        incidents.append(
            Incident(
                f"outage{k}",
                "outage",
                (api, network),
                (rate, rate / 2),
                (api.rate, network.rate),
                start_minute=start,
                end_minute=min(start + duration, minutes),
            )
        )
    spacing = (times[-1] - times[0]) / max(len(times) - 1, 1) if len(times) > 1 else float(preset["spacing"])
    if preset["cadence"] == "daytime":
        spacing = 24 * 60 / max(sum(1 for t in times if t < times[0] + 24 * 60), 1)
    return Scenario(
        name=name,
        seed=seed,
        minutes=minutes,
        low=float(preset["low"]),
        high=float(preset["high"]),
        start_hour=float(preset["start_hour"]),
        releases=releases,
        incidents=incidents,
        background=background,
        cadence_minutes=spacing,
    )


# -- traffic ---------------------------------------------------------------------------------------------


@dataclass
class StreamTruth:
    """Per-minute ground truth of one incident's stream, from its onset: what the oracle watches."""

    affected: list[int] = field(default_factory=list)
    exposure: list[int] = field(default_factory=list)


@dataclass
class MinuteBatch:
    envelopes: list[bytes]
    sessions: int
    events: int


class TrafficGenerator:
    """Sentry envelopes of a scenario, minute by minute: one ``session`` item per session start (``init``
    true, status ``ok``, ``attrs.user_agent``/``release``/``environment`` as @sentry/browser sends them),
    a second update (``unhandled``, one error) for every errored session, one ``event`` per affected
    session and signature. Keeps each incident's stream truth for the oracle."""

    def __init__(
        self,
        scenario: Scenario,
        rng: np.random.Generator,
        *,
        start: datetime,
        max_items: int = 900,
        truth_minutes: int = 240,
    ) -> None:
        self.scenario = scenario
        self.rng = rng
        self.start = start
        self.max_items = max_items
        self.truth_minutes = truth_minutes
        self.shares = scenario.release_shares()
        self.truth: dict[str, StreamTruth] = {i.id: StreamTruth() for i in scenario.incidents}
        self._sid = 0
        self._sid_prefix = f"{scenario.seed & 0xFFFFFFFF:08x}"

    def _onset(self, incident: Incident) -> int:
        if incident.is_outage:
            assert incident.start_minute is not None
            return incident.start_minute
        assert incident.release_from is not None
        return self.scenario.releases[incident.release_from].deploy_minute

    def _sigs(self, release: Release, segment: str, minute: int) -> list[tuple[Sig, float]]:
        """(signature, rate per session) of sessions of ``release`` in ``segment`` started in ``minute``."""
        scenario = self.scenario
        rates: dict[str, float] = {s.name: s.rate for s in scenario.background}
        by_name: dict[str, Sig] = {s.name: s for s in scenario.background}
        since_deploy = minute - release.deploy_minute
        rates["chunk_load"] = rates.get("chunk_load", 0.0) + max(
            (
                traffic.chunk_load_after_deploy(minute - r.deploy_minute)
                for r in scenario.deployed
                if 0 <= minute - r.deploy_minute < 60
            ),
            default=0.0,
        )
        del since_deploy
        for incident in scenario.incidents:
            if incident.is_outage:
                if not incident.active_at(minute):
                    continue
            elif not incident.present_in(release.index) or (incident.segment and incident.segment != segment):
                continue
            for sig, extra in zip(incident.sigs, incident.extra_rates, strict=True):
                by_name[sig.name] = sig
                rates[sig.name] = rates.get(sig.name, 0.0) + extra
        for r in scenario.releases[1 : release.index + 1]:
            for sig in r.harmless:  # a harmless error stays in the code from its release on
                by_name[sig.name] = sig
                rates[sig.name] = sig.rate
        return [(by_name[name], rate) for name, rate in rates.items() if rate > 0]

    def _session_item(self, sid: str, release: str, ua: str, started: str, stamp: str, *, errored: bool) -> bytes:
        body = {
            "sid": sid,
            "init": not errored,
            "started": started,
            "timestamp": stamp,
            "status": "unhandled" if errored else "ok",
            "errors": 1 if errored else 0,
            "attrs": {"release": release, "environment": ENVIRONMENT, "ip_address": "{{auto}}", "user_agent": ua},
        }
        return b'{"type":"session"}\n' + json.dumps(body, separators=(",", ":")).encode()

    def minute(self, minute: int) -> MinuteBatch:
        scenario, rng = self.scenario, self.rng
        at = self.start + timedelta(minutes=minute)
        expected = scenario.sessions_per_minute(minute)
        items: list[bytes] = []
        sessions = events = 0
        stream_affected = dict.fromkeys(self.truth, 0)
        stream_exposure = dict.fromkeys(self.truth, 0)
        for release in scenario.releases:
            share = self.shares[release.index, minute]
            if share < 1e-4:
                continue
            for segment in SEGMENTS:
                n = int(rng.poisson(expected * share * segment.share))
                if n == 0:
                    continue
                sigs = self._sigs(release, segment.name, minute)
                hits = rng.binomial(n, np.minimum([rate for _, rate in sigs], 1.0))
                offsets = np.sort(rng.uniform(0, 55, size=n))
                sids = [f"{self._sid_prefix}{self._sid + j:024x}" for j in range(n)]
                self._sid += n
                for sid, offset in zip(sids, offsets, strict=True):
                    stamp = (at + timedelta(seconds=float(offset))).isoformat()
                    items.append(self._session_item(sid, release.name, segment.user_agent, stamp, stamp, errored=False))
                errored = min(int(hits.sum()), n)
                for sid, offset in zip(sids[:errored], offsets[:errored], strict=True):
                    started = (at + timedelta(seconds=float(offset))).isoformat()
                    later = (at + timedelta(seconds=float(offset) + 2.0)).isoformat()
                    items.append(
                        self._session_item(sid, release.name, segment.user_agent, started, later, errored=True)
                    )
                for (sig, _rate), k in zip(sigs, hits, strict=True):
                    for _ in range(int(k)):
                        items.append(
                            traffic._event(
                                sig,
                                release=release.name,
                                ts=at.timestamp() + float(rng.uniform(0, 59)),
                                browser_ua=segment.user_agent,
                                rng=rng,
                            )
                        )
                events += int(hits.sum())
                sessions += n
                self._count_truth(release, segment, minute, n, sigs, hits, stream_affected, stream_exposure)
        for incident in scenario.incidents:
            since = minute - self._onset(incident)
            if 0 <= since < self.truth_minutes:
                self.truth[incident.id].affected.append(stream_affected[incident.id])
                self.truth[incident.id].exposure.append(stream_exposure[incident.id])
        envelopes = [b"{}\n" + b"\n".join(items[i : i + self.max_items]) for i in range(0, len(items), self.max_items)]
        return MinuteBatch(envelopes, sessions, events)

    def _count_truth(
        self,
        release: Release,
        segment: Segment,
        minute: int,
        n: int,
        sigs: list[tuple[Sig, float]],
        hits: np.ndarray,
        affected: dict[str, int],
        exposure: dict[str, int],
    ) -> None:
        by_name = {sig.name: int(k) for (sig, _), k in zip(sigs, hits, strict=True)}
        for incident in self.scenario.incidents:
            if incident.is_outage:  # every release, every browser
                pass
            elif release.index != incident.release_from or (incident.segment and incident.segment != segment.name):
                continue  # the oracle watches the stream that changes: the bringing release (and segment)
            exposure[incident.id] += n
            affected[incident.id] += by_name.get(incident.sigs[0].name, 0)
        del minute


def incident_onset(scenario: Scenario, incident: Incident) -> int:
    if incident.is_outage:
        assert incident.start_minute is not None
        return incident.start_minute
    assert incident.release_from is not None
    return scenario.releases[incident.release_from].deploy_minute


def oracle_rates(incident: Incident) -> tuple[float, float]:
    """(before, after) rate per session of the stream the oracle watches (its first signature)."""
    before = incident.base_rates[0]
    after = before + incident.extra_rates[0]
    if before == 0.0:
        before = NEW_SIGNATURE_FLOOR
    return before, after


# -- scoring -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """An anomaly as created (first seen by a pass); later updates of it are not new alerts."""

    anomaly_id: int
    kind: str
    title: str
    culprit: str
    deploy_id: int | None
    release: str
    minute: int  # the simulated minute of the pass that first reported it


@dataclass(frozen=True)
class Verdict:
    alert: Alert
    verdict: str  # true, repeat, misattributed, false
    incident: str | None
    reason: str
    detects: bool = False  # a true alert that names the incident's signature (counts for recall and delay)


# an outage's signature reported this long after the outage ended is about its background rate, not the outage
OUTAGE_REPORT_SLACK = 60


def _outage_overlaps(scenario: Scenario, start: int, end: int) -> Incident | None:
    """An outage active at some minute of ``[start, end]`` (sessions started after it saw none of it)."""
    for incident in scenario.incidents:
        if incident.is_outage:
            assert incident.start_minute is not None and incident.end_minute is not None
            if incident.start_minute <= end and start < incident.end_minute:
                return incident
    return None


def score_alert(scenario: Scenario, alert: Alert, deploy_release: dict[int, int]) -> Verdict:
    """Class of one alert. ``deploy_release`` maps the API's deploy ids to release indexes."""
    release = deploy_release.get(alert.deploy_id) if alert.deploy_id is not None else None
    if alert.deploy_id is not None and release is None:
        return Verdict(alert, "false", None, f"on deploy {alert.deploy_id}, not one of this history's")
    on = f"on {scenario.releases[release].name}" if release is not None else "with no deploy"
    after = (
        f", {alert.minute - scenario.releases[release].deploy_minute} min after its deploy"
        if release is not None
        else ""
    )
    if alert.kind == "release_error_rate":
        return _score_release_level(scenario, alert, release, on, after)
    incident = next(
        (i for i in scenario.incidents if any(s.culprit == alert.culprit and s.culprit for s in i.sigs)), None
    )
    if incident is None:
        return Verdict(
            alert,
            "false",
            None,
            f"{alert.kind} {on}{after}: {alert.title[:60]!r} is no incident's signature (its rate never changed)",
        )
    if incident.is_outage:
        assert incident.start_minute is not None and incident.end_minute is not None
        if not incident.start_minute <= alert.minute <= incident.end_minute + OUTAGE_REPORT_SLACK:
            return Verdict(
                alert,
                "false",
                incident.id,
                f"{alert.kind} {on}{after}: {alert.title[:60]!r} at its background rate "
                f"(outage {incident.id} was over by {scenario.clock(incident.end_minute)})",
            )
        if release is None:
            return Verdict(alert, "true", incident.id, f"outage reported as a {alert.kind} with no deploy", True)
        return Verdict(
            alert,
            "misattributed",
            incident.id,
            f"outage {incident.id} (began {scenario.clock(incident.start_minute or 0)}) blamed {on}{after}",
        )
    assert incident.release_from is not None
    if release is None:
        return Verdict(
            alert,
            "false",
            incident.id,
            f"{incident.id} of {scenario.releases[incident.release_from].name} "
            f"reported as a {alert.kind} with no deploy",
        )
    if release == incident.release_from:
        return Verdict(alert, "true", incident.id, f"{incident.id} {on}", True)
    if release > incident.release_from:
        return Verdict(
            alert,
            "repeat",
            incident.id,
            f"{incident.id} brought by {scenario.releases[incident.release_from].name} pinned again {on}{after}",
        )
    return Verdict(alert, "false", incident.id, f"{incident.id} blamed on an earlier release ({on})")


def _score_release_level(scenario: Scenario, alert: Alert, release: int | None, on: str, after: str) -> Verdict:
    if release is None:
        outage = _outage_overlaps(scenario, alert.minute, alert.minute)
        if outage is not None:
            return Verdict(alert, "true", outage.id, "outage reported as a release-level spike with no deploy")
        return Verdict(alert, "false", None, "release-level alert with no deploy and no incident")
    brought = [i for i in scenario.incidents if not i.is_outage and i.release_from == release]
    if brought:
        return Verdict(alert, "true", brought[0].id, f"release level {on}, which brought {brought[0].id}")
    outage = _outage_overlaps(scenario, scenario.releases[release].deploy_minute, alert.minute)
    if outage is not None:
        return Verdict(alert, "misattributed", outage.id, f"release error rate {on}{after} during outage {outage.id}")
    carried = [i for i in scenario.incidents if not i.is_outage and i.present_in(release)]
    if carried:
        return Verdict(
            alert,
            "repeat",
            carried[0].id,
            f"release error rate {on}{after}: {carried[0].id} of "
            f"{scenario.releases[carried[0].release_from or 0].name} is still present, same rate",
        )
    return Verdict(alert, "false", None, f"release error rate {on}{after}: a benign release")


def score_alerts(scenario: Scenario, alerts: list[Alert], deploy_release: dict[int, int]) -> list[Verdict]:
    return [score_alert(scenario, a, deploy_release) for a in alerts]
