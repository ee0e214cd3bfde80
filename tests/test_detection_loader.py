"""The detection pass's loader: what a pass at `at` sees of the stored counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy.orm import Session, sessionmaker

from detector.deploys.service import record_deploy
from detector.detection import load_frames
from detector.model import DetectorConfig, detect_anomalies
from detector.store.db import transaction
from detector.store.models import Project, SessionMinute, Signature, SignatureMinute

AT = datetime(2026, 11, 27, 12, 10, tzinfo=UTC)
DEPLOY_AT = AT - timedelta(minutes=10)


def _store(factory: sessionmaker[Session], project: Project, *, seen_days_before: float) -> int:
    """A signature first seen 30 days ago, seen once `seen_days_before` the deploy, absent from the day
    before it, and hitting 10 % of sessions of the release deployed 10 minutes before `AT`."""
    with transaction(factory) as session:
        sig = Signature(
            project_id=project.id,
            hash="h" * 40,
            type="TypeError",
            value="x is undefined",
            culprit="src/app.js",
            title="TypeError: x is undefined",
            in_app=True,
            first_seen=DEPLOY_AT - timedelta(days=30),
            last_seen=AT,
            first_release="web@0",
        )
        session.add(sig)
        session.flush()
        old = DEPLOY_AT - timedelta(days=seen_days_before)
        session.add(
            SignatureMinute(
                signature_id=sig.id,
                release="web@0",
                environment="production",
                minute=old,
                project_id=project.id,
                events=3,
                users=3,
                sessions=3,
            )
        )
        for m in range(0, 23 * 60, 10):  # the day before the deploy: 1,000 sessions every 10 minutes
            session.add(
                SessionMinute(
                    project_id=project.id,
                    release="web@1",
                    environment="production",
                    minute=DEPLOY_AT - timedelta(days=1) + timedelta(minutes=m + 60),
                    started=1000,
                    errored=10,
                    crashed=0,
                )
            )
        for m in range(10):
            minute = DEPLOY_AT + timedelta(minutes=m)
            session.add(
                SessionMinute(
                    project_id=project.id,
                    release="web@2",
                    environment="production",
                    minute=minute,
                    started=100,
                    errored=10,
                    crashed=0,
                )
            )
            session.add(
                SignatureMinute(
                    signature_id=sig.id,
                    release="web@2",
                    environment="production",
                    minute=minute,
                    project_id=project.id,
                    events=12,
                    users=10,
                    sessions=10,
                )
            )
        db_project = session.get(Project, project.id)
        assert db_project is not None
        record_deploy(
            session,
            project=db_project,
            release="web@2",
            environment="production",
            date_finished=DEPLOY_AT,
            source="api",
        )
        return sig.id


@pytest.mark.parametrize(("days_before", "kind"), [(3.0, "regression"), (20.0, "new_signature")])
def test_a_signature_seen_days_before_the_deploy_is_not_new(
    factory: sessionmaker[Session], project: Project, days_before: float, kind: str
) -> None:
    sig_id = _store(factory, project, seen_days_before=days_before)
    config = DetectorConfig()
    with factory() as session:
        frames = load_frames(session, project_id=project.id, at=AT, lookback=timedelta(days=config.lookback_days))
    signatures = frames["signatures"].set_index("signature_id")
    if days_before < config.lookback_days:
        assert signatures.loc[sig_id, "last_seen_before"] == pd.Timestamp(DEPLOY_AT - timedelta(days=days_before))
    else:
        assert pd.isna(signatures.loc[sig_id, "last_seen_before"])
    assert frames["sig_counts"]["minute"].min() >= pd.Timestamp(AT - timedelta(hours=24))
    assert isinstance(frames["sig_counts"]["release"].dtype, pd.CategoricalDtype)
    findings = [f for f in detect_anomalies(**frames, at=pd.Timestamp(AT), config=config) if f.signature_id == sig_id]
    assert [f.kind for f in findings] == [kind]
