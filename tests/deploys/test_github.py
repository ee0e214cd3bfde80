from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.errors import InvalidInput
from detector.sources.github import parse_deployment_status, parse_push, signature_for, verify_signature

BODY = b'{"zen": "Keep it logically awesome."}'


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    # The example from GitHub's documentation on validating webhook deliveries.
    assert (
        signature_for("It's a Secret to Everybody", b"Hello, World!")
        == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


@pytest.mark.parametrize(
    ("secret", "header", "ok"),
    [
        ("s3cret", signature_for("s3cret", BODY), True),
        ("s3cret", signature_for("other", BODY), False),
        ("s3cret", signature_for("s3cret", BODY + b" "), False),
        ("s3cret", signature_for("s3cret", BODY).replace("sha256=", "sha1="), False),
        ("s3cret", None, False),
        (None, signature_for("", BODY), False),
        ("", signature_for("", BODY), False),
    ],
)
def test_verify_signature(secret: str | None, header: str | None, ok: bool) -> None:
    assert verify_signature(secret, BODY, header) is ok


def fixture_payloads(fixtures_dir: Path, event: str) -> list[dict]:
    return json.loads((fixtures_dir / "github-webhooks" / f"{event}.json").read_text())


def test_deployment_status_release_is_the_payload_release_else_the_sha(fixtures_dir: Path) -> None:
    payload = fixture_payloads(fixtures_dir, "deployment_status")[0]
    plain = parse_deployment_status(payload)
    assert plain.release == plain.sha == "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    assert (plain.state, plain.environment, plain.deployment_id) == ("success", "production", 145988746)
    assert plain.finished is not None and plain.finished.isoformat() == "2019-05-15T15:20:55+00:00"
    named = {**payload, "deployment": {**payload["deployment"], "payload": {"release": "web@3.1.0"}}}
    assert parse_deployment_status(named).release == "web@3.1.0"


def test_deployment_status_without_a_sha_is_invalid(fixtures_dir: Path) -> None:
    payload = fixture_payloads(fixtures_dir, "deployment_status")[0]
    broken = {**payload, "deployment": {**payload["deployment"], "sha": None}}
    with pytest.raises(InvalidInput, match=r"deployment\.sha"):
        parse_deployment_status(broken)


def test_push_brings_branch_commits_only(fixtures_dir: Path) -> None:
    payloads = fixture_payloads(fixtures_dir, "push")
    branch = next(p for p in payloads if p["ref"] == "refs/heads/master")
    commits = parse_push(branch)
    assert [c.sha for c in commits] == [c["id"] for c in branch["commits"]]
    assert commits[0].repository == "Codertocat/Hello-World"
    assert {f.change_type for f in commits[0].files} <= {"A", "M", "D"}
    assert all(parse_push(p) == [] for p in payloads if p["ref"].startswith("refs/tags/"))
    assert parse_push({**branch, "after": "0" * 40}) == []
