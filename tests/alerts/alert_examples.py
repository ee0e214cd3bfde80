"""Alert contents for tests: the seed incident, and one pushed past every limit.

Other tests may import them: `from tests.alerts.alert_examples import seed_incident_content`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from detector.alerts.content import AlertContent, SuspectCommit

DEPLOYED_AT = datetime(2026, 11, 27, 14, 2, tzinfo=UTC)


def seed_incident_content(**changes: object) -> AlertContent:
    """The seed incident: `getEntitlements()` now returns an object, `PaidFeatures.js` still maps it."""
    values: dict[str, object] = {
        "anomaly_id": 17,
        "kind": "new_signature",
        "state": "open",
        "title": "TypeError: <x>.map is not a function",
        "culprit": "renderPaidFeatures (src/features/PaidFeatures.js:4)",
        "project_slug": "web",
        "release": "web@1.2.0",
        "environment": "production",
        "deploy": {"release": "web@1.2.0", "environment": "production", "deployed_at": DEPLOYED_AT},
        "minutes_after_deploy": 2.0,
        "detected_at": datetime(2026, 11, 27, 14, 4, tzinfo=UTC),
        "events": 412,
        "users": 12,
        "sessions_affected": 37,
        "rate": 0.021,
        "baseline_rate": 0.0,
        "segments": [
            {"column": "browser", "value": None, "share": 1.0},
            {"column": "url", "value": "/billing", "share": 0.92},
        ],
        "suspects": [
            {
                "sha": "4be2f1c9d0a7e35b8f61c2d4a9e0b7c3f5d1a2e8",
                "message": "Add instrumentation to getEntitlements\n\nWraps the response in {data, timing}.",
                "author": "Ada Lovelace <ada@example.com>",
                "score": 0.91,
                "evidence": [
                    "It changed src/api/entitlements.js, which src/features/PaidFeatures.js imports.",
                    "It changed getEntitlements(), which the failing frame renderPaidFeatures calls.",
                    "It was the only commit in web@1.2.0 touching the stack's files.",
                ],
            },
            {
                "sha": "9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d",
                "message": "Bump copy on the billing page",
                "author": "Grace Hopper",
                "score": 0.12,
                "evidence": ["It changed src/pages/Billing.js, on the same route."],
            },
        ],
        "evidence_unavailable": [],
        "links": {
            "api_url": "http://127.0.0.1:8000/api/v1/anomalies/17",
            "ui_url": "http://127.0.0.1:8000/anomalies/17?project=web&tab=suspects",
        },
    }
    values.update(changes)
    return AlertContent(**values)  # type: ignore[arg-type]


def extreme_content(suspect_count: int = 20) -> AlertContent:
    """Every free-text value far past its limit, full of characters that need escaping."""
    nasty = "<b>&amp;</b> `code` *bold* <!channel> <@U123|x> 💥 " * 400
    suspects: list[SuspectCommit] = [
        {
            "sha": f"{i:040x}",
            "message": f"Commit {i} " + nasty,
            "author": "Mallory <m@example.com> " * 50,
            "score": 1.0 - i / 100,
            "evidence": [f"Sentence {j}: " + nasty for j in range(12)],
        }
        for i in range(suspect_count)
    ]
    return seed_incident_content(
        title="TypeError: " + nasty,
        culprit=nasty,
        project_slug="web" + nasty,
        release="web@" + nasty,
        environment="production" + nasty,
        deploy={"release": "web@" + nasty, "environment": nasty, "deployed_at": DEPLOYED_AT},
        segments=[{"column": nasty, "value": nasty, "share": 0.5} for _ in range(30)]
        + [{"column": "browser", "value": None, "share": 1.0}],
        suspects=suspects,
        evidence_unavailable=[nasty for _ in range(25)],
        links={"api_url": "http://h/api/v1/anomalies/1?x=" + "a|b>c" * 300, "ui_url": "javascript:" + nasty},
    )
