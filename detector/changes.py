"""What a detection pass changed, in the one shape the API's `POST /detect` and `detector detect` answer."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from detector.detection import AnomalyChange
from detector.store.anomalies import anomaly_as_dict
from detector.store.models import Anomaly, Deploy


def describe_changes(
    session: Session, changes: list[AnomalyChange], *, project_slug: str, public_url: str
) -> list[dict[str, Any]]:
    """One item per change: `anomaly_id`, `change` (created/updated/…), `kind`, and the whole `anomaly` as
    the anomaly endpoints show it."""
    items: list[dict[str, Any]] = []
    for change in changes:
        anomaly = session.get(Anomaly, change.anomaly_id)
        assert anomaly is not None
        deploy = session.get(Deploy, anomaly.deploy_id) if anomaly.deploy_id else None
        items.append(
            {
                "anomaly_id": change.anomaly_id,
                "change": change.change,
                "kind": change.kind,
                "anomaly": anomaly_as_dict(anomaly, deploy, project_slug=project_slug, public_url=public_url),
            }
        )
    return items
