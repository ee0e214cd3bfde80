"""A spike found again later, by a deploy's test whose onset points back into an excursion already
reported (running or ended), continues that anomaly instead of opening a second alert for one outage."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.detection import _anomaly_values, _continued_anomaly
from detector.model.findings import Finding
from detector.store.anomalies import spike_covering, upsert_anomaly
from detector.store.db import transaction
from detector.store.models import Anomaly, Project, Signature

ONSET = datetime(2026, 12, 1, 7, 7, tzinfo=UTC)
END = ONSET + timedelta(hours=2)


def spike(signature_id: int, key: str, began: datetime, *, ended: datetime | None, onset: datetime | None) -> Finding:
    details: dict = {
        "spike": {
            "began": began.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "crossed_at": (began + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "baseline_rate": 0.0002,
            "dispersion": 1.0,
            "threshold": 15.0,
            "ended_at": None if ended is None else ended.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }
    if onset is not None:
        details["onset"] = onset.isoformat()
    return Finding(
        kind="spike",
        signature_id=signature_id,
        title="Error: Request to /api/orders failed with <n>",
        release="",
        environment="production",
        deploy_id=None,
        first_seen=pd.Timestamp(began),
        detected_at=pd.Timestamp(began + timedelta(minutes=6)),
        crossed_at=pd.Timestamp(began + timedelta(minutes=5)),
        events=40,
        users=30,
        sessions_affected=30,
        rate=0.02,
        baseline_rate=0.0002,
        score=2.0,
        key=key,
        details=details,
    )


def a_signature(session: Session, project: Project) -> int:
    row = Signature(
        project_id=project.id,
        hash="a" * 40,
        type="Error",
        value="Request to /api/orders failed with 503",
        culprit="loadOrders",
        title="Error: Request to /api/orders failed with <n>",
        first_seen=ONSET - timedelta(days=3),
        last_seen=END,
    )
    session.add(row)
    session.flush()
    return row.id


def test_an_onset_inside_an_ended_excursion_continues_its_anomaly(
    factory: sessionmaker[Session], project: Project
) -> None:
    with transaction(factory) as session:
        sig = a_signature(session, project)
        reported, change = upsert_anomaly(
            session,
            project_id=project.id,
            values=_anomaly_values(spike(sig, f"spike:{sig}:production:07:12", ONSET, ended=END, onset=None)),
        )
        assert change == "created"
        # hours later a deploy's test finds the same rise, its onset estimate back at the outage's start
        again = spike(sig, f"spike:{sig}:production:onset-after-deploy-9", ONSET, ended=None, onset=ONSET)
        assert _continued_anomaly(session, project.id, again) is reported
        # a rise that began after the excursion ended is a new one
        later = spike(sig, f"spike:{sig}:production:19:00", END + timedelta(hours=10), ended=None, onset=None)
        assert _continued_anomaly(session, project.id, later) is None
        assert (
            spike_covering(session, project_id=project.id, signature_id=sig, environment="production", began=END)
            is None
        )
        assert (
            spike_covering(
                session,
                project_id=project.id,
                signature_id=sig,
                environment="production",
                began=ONSET - timedelta(minutes=1),
            )
            is None
        )
        assert session.scalar(select(func.count(Anomaly.id)).where(Anomaly.project_id == project.id)) == 1


def test_a_spike_of_a_recent_open_deploy_bug_joins_its_anomaly_and_an_old_one_does_not(
    factory: sessionmaker[Session], project: Project
) -> None:
    with transaction(factory) as session:
        sig = a_signature(session, project)
        bug = spike(sig, f"new_signature:{sig}:production:7", ONSET, ended=None, onset=None)
        bug = replace(bug, kind="new_signature", release="web@1.7.0", deploy_id=None, details={})
        reported, change = upsert_anomaly(session, project_id=project.id, values=_anomaly_values(bug))
        assert change == "created"
        # 13 h later the spike monitor, whose baseline still holds the hours before the bug, sees it rise
        night = spike(sig, f"spike:{sig}:production:20:10", ONSET + timedelta(hours=13), ended=None, onset=None)
        assert _continued_anomaly(session, project.id, night) is reported
        # two days later an open but stale bug anomaly does not silence a new rise of the signature
        later = spike(sig, f"spike:{sig}:production:d3", ONSET + timedelta(days=2), ended=None, onset=None)
        assert _continued_anomaly(session, project.id, later) is None
