"""DetectorClient over a demo database: frames from the database and from the HTTP API agree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from detector.client import DetectorClient, plot_release_error_rates, plot_signature_series
from detector.config import Settings
from detector.demo import DemoResult, run_demo
from detector.errors import InvalidInput
from detector.model import DetectorConfig
from detector.store.db import make_engine, make_sessionmaker, transaction
from detector.store.projects import create_token

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, DemoResult]:
    work: Path = tmp_path_factory.mktemp("client-demo")
    settings = Settings(database_url=f"sqlite:///{work / 'demo.db'}")
    return settings, run_demo(settings, workdir=work, echo=lambda _line: None)


@pytest.fixture(scope="module")
def client(demo: tuple[Settings, DemoResult]) -> DetectorClient:
    return DetectorClient.from_database(demo[0].database_url)


@pytest.fixture(scope="module")
def api_client(demo: tuple[Settings, DemoResult]) -> Iterator[DetectorClient]:
    settings = demo[0]
    with transaction(make_sessionmaker(make_engine(settings.database_url))) as session:
        token = create_token(session, label="client tests")
    with TestClient(create_app(settings)) as http:
        yield DetectorClient.from_api("http://testserver", token, http=http)


def test_deploys_anomalies_and_suspects(client: DetectorClient, demo: tuple[Settings, DemoResult]) -> None:
    result = demo[1]
    deploys = client.deploys("shop")
    assert deploys["release"].tolist() == ["web@1.1.0", "web@1.2.0"]
    assert str(deploys["deployed_at"].dtype).startswith("datetime64") and deploys["deployed_at"].dt.tz is not None
    anomalies = client.anomalies("shop", kind="new_signature")
    assert anomalies["id"].tolist() == [result.anomaly_id]
    assert anomalies["minutes_after_deploy"].iloc[0] == pytest.approx(result.caught_minutes)
    suspects = client.suspects("shop", result.anomaly_id)
    assert suspects["rank"].tolist()[:2] == [1, 2]
    assert "instrumentation" in suspects["message"].iloc[0]
    assert list(suspects["score"]) == sorted(suspects["score"], reverse=True)


def test_signature_series_and_release_error_rates(client: DetectorClient, demo: tuple[Settings, DemoResult]) -> None:
    result = demo[1]
    signatures = client.signatures("shop")
    incident = signatures[signatures["title"].str.contains("map is not a function")]
    assert len(incident) == 1
    series = client.signature_series("shop", int(incident["id"].iloc[0]))
    assert set(series["release"]) == {"web@1.2.0"}
    assert series["events"].sum() > 0
    rates = client.release_error_rates("shop", result.deploy_id)
    assert list(rates.columns[:6]) == ["minute", "release", "environment", "sessions", "errored", "rate"]
    deployed_at = client.deploys("shop")["deployed_at"].iloc[-1]
    before = rates[(rates["minute"] < deployed_at) & (rates["release"] == "web@1.1.0")]
    after = rates[(rates["minute"] >= deployed_at) & (rates["release"] == "web@1.2.0")]
    assert after["errored"].sum() / after["sessions"].sum() > 2 * before["errored"].sum() / before["sessions"].sum()
    assert plot_release_error_rates(rates, deployed_at=deployed_at).get_ylabel() == "errored sessions (%)"
    assert len(plot_signature_series(series, deployed_at=deployed_at).lines) == 1  # the deploy line


def test_backtest_replays_what_would_have_fired(client: DetectorClient) -> None:
    deployed_at = client.deploys("shop")["deployed_at"].iloc[-1]
    end = deployed_at + pd.Timedelta(minutes=2)
    fired = client.backtest("shop", deployed_at - pd.Timedelta(minutes=5), end)
    new = fired[fired["kind"] == "new_signature"]
    assert len(new) == 1 and "map is not a function" in new["title"].iloc[0]
    # a pass at a minute sees that minute's counts: at the demo's 200 sessions a minute the deploy minute's
    # own sessions can suffice (a live pass runs after the minute, as the demo's do: +1 min)
    assert 0 <= new["minutes_after_deploy"].iloc[0] <= 2
    # a stricter false-alarm budget can only fire later (or not at all)
    strict = client.backtest("shop", deployed_at, end, config=DetectorConfig(alarms_per_week=0.001))
    strict_new = strict[strict["kind"] == "new_signature"]
    assert strict_new.empty or strict_new["detected_at"].iloc[0] >= new["detected_at"].iloc[0]


def test_api_client_matches_the_database(client: DetectorClient, api_client: DetectorClient) -> None:
    assert api_client.deploys("shop")["release"].tolist() == client.deploys("shop")["release"].tolist()
    assert api_client.anomalies("shop")["id"].tolist() == client.anomalies("shop")["id"].tolist()
    anomaly_id = int(client.anomalies("shop", kind="new_signature")["id"].iloc[0])
    assert (
        api_client.suspects("shop", anomaly_id)["sha"].tolist() == client.suspects("shop", anomaly_id)["sha"].tolist()
    )
    with pytest.raises(InvalidInput):
        api_client.backtest("shop", pd.Timestamp.now(tz="UTC"), pd.Timestamp.now(tz="UTC"))


def _minutes(start: str, n: int) -> list[pd.Timestamp]:
    return list(pd.date_range(start, periods=n, freq="1min", tz="UTC"))


def test_plots_have_titles_labels_and_bars_that_start_at_their_minute() -> None:
    import matplotlib.dates as mdates

    minutes = _minutes("2026-11-27T15:00:00Z", 6)
    series = pd.DataFrame({"minute": minutes, "release": "web@1.2.0", "events": [0, 3, 5, 4, 6, 5]})
    deployed = minutes[1]
    ax = plot_signature_series(series, deployed_at=deployed)
    assert ax.get_title() and ax.get_xlabel() == "minute (UTC)" and ax.get_ylabel() == "events per minute"
    lefts = sorted(round(bar.get_x(), 9) for bar in ax.patches)
    assert lefts == [round(float(mdates.date2num(m)), 9) for m in minutes]  # from the minute's start
    first_error = min(bar.get_x() for bar in ax.patches if bar.get_height() > 0)
    assert first_error >= mdates.date2num(deployed)  # never drawn before the deploy line

    rates = pd.DataFrame({"minute": minutes, "release": "web@1.1.0", "rate": 0.02})
    ax = plot_release_error_rates(rates, deployed_at=deployed)
    assert ax.get_title() and ax.get_xlabel() == "minute (UTC)" and ax.get_ylabel() == "errored sessions (%)"
    assert list(ax.texts) == []  # nothing clipped without an outlier


def test_one_outlier_release_does_not_flatten_the_chart() -> None:
    minutes = _minutes("2026-11-27T15:00:00Z", 30)
    steady = pd.DataFrame(
        {"minute": minutes, "release": "web@1.2.0", "rate": [0.02 + 0.001 * (i % 5) for i in range(30)]}
    )
    tiny = pd.DataFrame({"minute": minutes[:1], "release": "web@0.9.0", "rate": [1.0]})  # 1 session, errored
    ax = plot_release_error_rates(pd.concat([steady, tiny], ignore_index=True))
    _low, high = ax.get_ylim()
    assert high < 100 and high > steady["rate"].max() * 100  # the steady line fills the chart
    (note,) = ax.texts
    assert "clipped" in note.get_text() and "web@0.9.0" in note.get_text()
