"""DataFrames for notebooks: deploys, anomalies, signatures, series, suspects, and detection backtests.

    client = DetectorClient.from_database("sqlite:///detector.db")   # or from_api(base_url, token)
    client.anomalies("shop")

Every method returns a pandas DataFrame with the columns its docstring names (empty frames keep
them). Times are timezone-aware UTC. `from_api` reads the native HTTP API; `release_error_rates` and
`backtest` read session counts and rerun the model, which the HTTP API does not expose, so they need
`from_database` (they raise `InvalidInput` otherwise).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pandas as pd
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, sessionmaker

from detector.detection import gate_lookup, load_frames
from detector.errors import InvalidInput, NotFound
from detector.model import DetectorConfig, detect_anomalies
from detector.store.anomalies import anomaly_as_dict, get_anomaly, list_anomalies
from detector.store.db import make_engine, make_sessionmaker
from detector.store.deploys import get_deploy, list_deploys
from detector.store.models import Deploy, SessionMinute, Signature
from detector.store.projects import get_project_by_slug
from detector.store.signatures import list_signatures, signature_series

DEPLOY_COLUMNS = ["id", "release", "environment", "deployed_at", "sha", "source", "commit_count"]
ANOMALY_COLUMNS = [
    "id", "kind", "state", "title", "release", "environment", "deploy_id", "signature_id", "first_seen",
    "detected_at", "minutes_after_deploy", "events", "users", "sessions_affected", "rate", "baseline_rate", "score",
]  # fmt: skip
SERIES_COLUMNS = ["minute", "release", "environment", "events", "users", "sessions"]
RATE_COLUMNS = ["minute", "release", "environment", "sessions", "errored", "rate"]
SUSPECT_COLUMNS = ["rank", "sha", "message", "author", "score", "evidence"]
BACKTEST_COLUMNS = [
    "key", "kind", "title", "release", "environment", "deploy_id", "detected_at", "minutes_after_deploy", "score",
]  # fmt: skip
TIME_COLUMNS = ("deployed_at", "first_seen", "detected_at", "minute", "last_seen")


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    for column in frame.columns:
        if column in TIME_COLUMNS:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    ordered = columns + [c for c in frame.columns if c not in columns]
    return frame[ordered].reset_index(drop=True)


class _Source(Protocol):
    def deploys(self, project: str) -> list[dict[str, Any]]: ...
    def anomalies(self, project: str, filters: dict[str, Any]) -> list[dict[str, Any]]: ...
    def anomaly(self, project: str, anomaly_id: int) -> dict[str, Any]: ...
    def signatures(self, project: str) -> list[dict[str, Any]]: ...
    def series(self, project: str, signature_id: int) -> list[dict[str, Any]]: ...


class _DatabaseSource:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def deploys(self, project: str) -> list[dict[str, Any]]:
        with self.factory() as session:
            p = get_project_by_slug(session, project)
            return list_deploys(session, project_id=p.id, limit=10_000)

    def anomalies(self, project: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        with self.factory() as session:
            p = get_project_by_slug(session, project)
            rows = list_anomalies(session, project_id=p.id, limit=10_000, **filters)
            return [
                anomaly_as_dict(a, session.get(Deploy, a.deploy_id) if a.deploy_id else None,
                                project_slug=p.slug, public_url="")
                for a in rows
            ]  # fmt: skip

    def anomaly(self, project: str, anomaly_id: int) -> dict[str, Any]:
        with self.factory() as session:
            p = get_project_by_slug(session, project)
            a = get_anomaly(session, project_id=p.id, anomaly_id=anomaly_id)
            deploy = session.get(Deploy, a.deploy_id) if a.deploy_id else None
            return anomaly_as_dict(a, deploy, project_slug=p.slug, public_url="")

    def signatures(self, project: str) -> list[dict[str, Any]]:
        with self.factory() as session:
            p = get_project_by_slug(session, project)
            return list_signatures(session, project_id=p.id, limit=10_000)

    def series(self, project: str, signature_id: int) -> list[dict[str, Any]]:
        with self.factory() as session:
            p = get_project_by_slug(session, project)
            sig = session.get(Signature, signature_id)
            if sig is None or sig.project_id != p.id:
                raise NotFound(f"no signature {signature_id} in project {project!r}")
            return signature_series(session, signature_id=signature_id)


class _ApiSource:
    def __init__(self, base_url: str, token: str, timeout: float, http: httpx.Client | None) -> None:
        self.http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self.http.headers["Authorization"] = f"Bearer {token}"

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self.http.get(path, params=params)
        if response.status_code == 404:
            raise NotFound(f"GET {path}: {response.text[:200]}")
        response.raise_for_status()
        return response.json()

    def _all(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query = {**(params or {}), "limit": 500}
        while True:
            body = self._get(path, query)
            items += body["items"]
            if not body.get("next"):
                return items
            query["cursor"] = body["next"]

    def deploys(self, project: str) -> list[dict[str, Any]]:
        return self._all(f"/api/v1/projects/{project}/deploys")

    def anomalies(self, project: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self._all(f"/api/v1/projects/{project}/anomalies", {k: v for k, v in filters.items() if v is not None})

    def anomaly(self, project: str, anomaly_id: int) -> dict[str, Any]:
        return dict(self._get(f"/api/v1/projects/{project}/anomalies/{anomaly_id}"))

    def signatures(self, project: str) -> list[dict[str, Any]]:
        return self._all(f"/api/v1/projects/{project}/signatures")

    def series(self, project: str, signature_id: int) -> list[dict[str, Any]]:
        return list(self._get(f"/api/v1/projects/{project}/signatures/{signature_id}/series")["items"])


class DetectorClient:
    """Read-only access for notebooks. Build it with `from_database` or `from_api`."""

    def __init__(self, source: _Source, factory: sessionmaker[Session] | None = None) -> None:
        self._source = source
        self._factory = factory

    @classmethod
    def from_database(cls, url: str) -> DetectorClient:
        """Read the database directly (SQLite file or PostgreSQL URL); every method is available."""
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        factory = make_sessionmaker(make_engine(url))
        return cls(_DatabaseSource(factory), factory)

    @classmethod
    def from_api(
        cls, base_url: str, token: str, *, timeout: float = 30.0, http: httpx.Client | None = None
    ) -> DetectorClient:
        """Read a running server's native API with an API token (`detector token create`); `http` is an
        httpx client to use instead of a new one (e.g. a FastAPI TestClient)."""
        return cls(_ApiSource(base_url, token, timeout, http))

    def _need_database(self, what: str) -> sessionmaker[Session]:
        if self._factory is None:
            raise InvalidInput(f"{what} reads stored counts directly: use DetectorClient.from_database(url)")
        return self._factory

    def deploys(self, project: str) -> pd.DataFrame:
        """One row per deploy, oldest first: id, release, environment, deployed_at, sha, source, commit_count,
        commits (list of dicts with sha, message, author_name, files)."""
        rows = self._source.deploys(project)
        frame = _frame(rows, DEPLOY_COLUMNS)
        return frame.sort_values(["deployed_at", "id"]).reset_index(drop=True) if len(frame) else frame

    def anomalies(
        self,
        project: str,
        *,
        kind: str | None = None,
        state: str | None = None,
        release: str | None = None,
        deploy_id: int | None = None,
    ) -> pd.DataFrame:
        """Anomalies, newest first, with the columns of `ANOMALY_COLUMNS` (plus suspects and segments)."""
        filters = {"kind": kind, "state": state, "release": release, "deploy_id": deploy_id}
        return _frame(self._source.anomalies(project, filters), ANOMALY_COLUMNS)

    def signatures(self, project: str) -> pd.DataFrame:
        """Every signature with its title, noise class, first/last seen, totals and releases."""
        return _frame(self._source.signatures(project), ["id", "title"])

    def signature_series(self, project: str, signature_id: int) -> pd.DataFrame:
        """Per-minute counts of one signature by release: minute, release, environment, events, users, sessions."""
        return _frame(self._source.series(project, signature_id), SERIES_COLUMNS)

    def suspects(self, project: str, anomaly_id: int) -> pd.DataFrame:
        """The anomaly's ranked suspect commits, best first: rank, sha, message, author, score, evidence."""
        anomaly = self._source.anomaly(project, anomaly_id)
        rows = [{"rank": i + 1, **s} for i, s in enumerate(anomaly.get("suspects") or [])]
        return _frame(rows, SUSPECT_COLUMNS)

    def release_error_rates(
        self, project: str, around_deploy_id: int, *, before: timedelta = timedelta(minutes=30),
        after: timedelta = timedelta(minutes=30),
    ) -> pd.DataFrame:  # fmt: skip
        """Per minute per release around a deploy: minute, release, environment, sessions (started),
        errored, rate (errored / sessions), for the deploy's environment from `before` until `after` it."""
        factory = self._need_database("release_error_rates")
        with factory() as session:
            p = get_project_by_slug(session, project)
            deploy = get_deploy(session, project_id=p.id, deploy_id=around_deploy_id)
            at = _utc(deploy["deployed_at"]).to_pydatetime()
            rows = session.execute(
                select(SessionMinute.minute, SessionMinute.release, SessionMinute.environment,
                       SessionMinute.started, SessionMinute.errored)
                .where(SessionMinute.project_id == p.id, SessionMinute.environment == deploy["environment"],
                       SessionMinute.minute >= at - before, SessionMinute.minute <= at + after)
                .order_by(SessionMinute.minute, SessionMinute.release)
            ).all()  # fmt: skip
        frame = pd.DataFrame(rows, columns=["minute", "release", "environment", "sessions", "errored"])
        frame = frame.groupby(["minute", "release", "environment"], as_index=False)[["sessions", "errored"]].sum()
        frame["rate"] = (frame["errored"] / frame["sessions"].where(frame["sessions"] > 0)).astype(float)
        return _frame(frame.to_dict("records"), RATE_COLUMNS)

    def backtest(
        self,
        project: str,
        start: datetime,
        end: datetime,
        *,
        config: DetectorConfig | None = None,
        step: timedelta = timedelta(minutes=1),
    ) -> pd.DataFrame:
        """Replay detection passes every `step` from `start` to `end` over stored counts with `config`.

        Each pass sees only what was known at its time (`detector.detection.load_frames`) and runs the
        pure model; nothing is written. One row per finding that would have fired, at its first pass:
        key, kind, title, release, environment, deploy_id, detected_at, minutes_after_deploy, score.
        """
        factory = self._need_database("backtest")
        config = config or DetectorConfig()
        with factory() as session:
            project_id = get_project_by_slug(session, project).id
            deployed = {
                deploy_id: _utc(when)
                for deploy_id, when in session.execute(
                    select(Deploy.id, Deploy.deployed_at).where(Deploy.project_id == project_id)
                )
            }
        first: dict[str, dict[str, Any]] = {}
        at = _utc(start)
        stop = _utc(end)
        while at <= stop:
            with factory() as session:
                frames = load_frames(
                    session,
                    project_id=project_id,
                    at=at.to_pydatetime(),
                    lookback=timedelta(days=config.lookback_days),
                    watch=timedelta(minutes=config.deploy_watch_minutes),
                    baseline=timedelta(minutes=config.baseline_max_minutes),
                )
                findings = detect_anomalies(
                    **frames, at=at, config=config, gate_met_at=gate_lookup(session, project_id, config)
                )
            for finding in findings:
                if finding.key in first:
                    continue
                row = asdict(finding) if hasattr(finding, "__dataclass_fields__") else dict(vars(finding))
                row["detected_at"] = at
                deployed_at = deployed.get(finding.deploy_id) if finding.deploy_id is not None else None
                row["minutes_after_deploy"] = None if deployed_at is None else (at - deployed_at).total_seconds() / 60
                first[finding.key] = row
            at += step
        return _frame(list(first.values()), BACKTEST_COLUMNS)


def open_notebook_data(
    database_url: str | None, *, demo_database: Path, project: str = "shop"
) -> tuple[DetectorClient, str]:
    """What a notebook reads, and the project to show: `database_url` (the notebook passes
    DETECTOR_DATABASE_URL) if set, else the demo's SQLite file `demo_database`. A database without that
    project (a missing file, a schema not created yet) first gets the demo incident replayed into it, never
    posted to Slack, so each notebook runs on a fresh clone as well as on a real database."""
    url = database_url or f"sqlite:///{demo_database}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not _has_project(url, project):
        from detector.config import Settings
        from detector.demo import run_demo

        settings = Settings(database_url=url, slack_webhook_url=None, slack_bot_token=None, slack_channel=None)
        project = run_demo(settings, echo=lambda _line: None).project_slug
    return DetectorClient.from_database(url), project


def _has_project(url: str, slug: str) -> bool:
    engine = make_engine(url)
    try:
        if not inspect(engine).has_table("projects"):
            return False
        with make_sessionmaker(engine)() as session:
            try:
                get_project_by_slug(session, slug)
            except NotFound:
                return False
        return True
    finally:
        engine.dispose()


def _utc(moment: datetime | pd.Timestamp) -> pd.Timestamp:
    # SQLite returns naive datetimes; every stored time is UTC
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


OUTLIER_FACTOR = 3.0
"""A chart's y axis is clipped when its highest value is over this many times the 95th percentile of all
its values (one release with a handful of sessions at 100% would otherwise flatten every other line)."""


def plot_release_error_rates(
    rates: pd.DataFrame, *, deployed_at: datetime | None = None, ax: Any = None, title: str | None = None
) -> Any:
    """Line per release of `rate` over `minute` (from `release_error_rates`), the deploy as a vertical line;
    an outlier's axis is clipped, with a note naming what went past it."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(10, 4))[1]
    for release, group in rates.groupby("release"):
        ax.plot(group["minute"], group["rate"] * 100, marker=".", label=str(release))
    _mark_deploy(ax, deployed_at)
    ax.set_title(title or "Errored sessions per minute, by release")
    ax.set_xlabel("minute (UTC)")
    ax.set_ylabel("errored sessions (%)")
    _clip_outliers(ax, rates.assign(value=rates["rate"] * 100), unit="%")
    ax.legend()
    return ax


def plot_signature_series(
    series: pd.DataFrame, *, deployed_at: datetime | None = None, ax: Any = None, title: str | None = None
) -> Any:
    """Events per minute per release of one signature (from `signature_series`), the deploy marked. Each bar
    spans its minute from the minute's start, so no error appears to begin before the deploy line."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(10, 4))[1]
    for release, group in series.groupby("release"):
        ax.bar(group["minute"], group["events"], width=1 / 24 / 60 * 0.9, align="edge", label=str(release), alpha=0.8)
    _mark_deploy(ax, deployed_at)
    ax.set_title(title or "Events per minute of the signature, by release")
    ax.set_xlabel("minute (UTC)")
    ax.set_ylabel("events per minute")
    _clip_outliers(ax, series.assign(value=series["events"]), unit=" events")
    ax.legend()
    return ax


def _clip_outliers(ax: Any, frame: pd.DataFrame, *, unit: str) -> None:
    """Clip the y axis above the bulk of the values when one outlier would flatten it, and say so."""
    values = frame["value"].dropna()
    if values.empty:
        return
    bulk = float(values.quantile(0.95))
    peak = float(values.max())
    if bulk <= 0 or peak <= OUTLIER_FACTOR * bulk:
        return
    limit = bulk * 1.5
    ax.set_ylim(0, limit)
    over = frame[frame["value"] > limit]
    names = ", ".join(sorted({str(r) for r in over["release"]}))
    ax.annotate(
        f"axis clipped at {limit:.3g}{unit}: {names} reach {peak:.3g}{unit}",
        xy=(0.01, 0.97), xycoords="axes fraction", va="top", fontsize=8, color="dimgray",
    )  # fmt: skip


def _mark_deploy(ax: Any, deployed_at: datetime | None) -> None:
    if deployed_at is not None:
        ax.axvline(pd.Timestamp(deployed_at), color="red", linestyle="--", label="deploy")
