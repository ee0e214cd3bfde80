"""The column bounds every compiled write is checked against (`detector.store.bounds`), on a real database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from detector.store.bounds import ValueNotStorable
from detector.store.db import transaction
from detector.store.models import ArtifactBundle, Project, Release


def releases(factory: sessionmaker[Session]) -> list[str]:
    with factory() as session:
        return list(session.scalars(select(Release.version).order_by(Release.version)))


def release_row(version: str) -> dict[str, object]:
    return {"org": "acme", "version": version, "date_created": datetime.now(UTC)}


def test_a_many_row_core_insert_with_one_value_too_long_writes_no_row(factory: sessionmaker[Session]) -> None:
    rows = [release_row(f"web@{n}") for n in range(5)] + [release_row("v" * 251)]
    refused = pytest.raises(ValueNotStorable, match=r"version is 251 characters long, over the limit of 250")
    with refused, transaction(factory) as session:
        session.execute(insert(Release), rows)
    assert releases(factory) == []


def test_values_at_the_limit_are_stored(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        session.execute(insert(Release), [release_row("v" * 250)])
    assert releases(factory) == ["v" * 250]


def test_an_update_past_the_limit_leaves_the_row_as_it_was(factory: sessionmaker[Session], project: Project) -> None:
    with pytest.raises(ValueNotStorable, match=r"\(projects.org\)"), transaction(factory) as session:
        session.execute(update(Project).where(Project.id == project.id).values(org="o" * 65))
    with factory() as session:
        assert session.scalar(select(Project.org).where(Project.id == project.id)) == project.org


def test_an_integer_outside_its_column_is_refused(factory: sessionmaker[Session], project: Project) -> None:
    refused = pytest.raises(
        ValueNotStorable, match=r"rate_limit_per_minute is 2147483648, outside the range of its column"
    )
    with refused, transaction(factory) as session:
        session.get_one(Project, project.id).rate_limit_per_minute = 2**31
    with transaction(factory) as session:
        session.get_one(Project, project.id).rate_limit_per_minute = 2**31 - 1
    with factory() as session:
        assert session.get_one(Project, project.id).rate_limit_per_minute == 2**31 - 1


def test_a_lookup_by_a_value_longer_than_the_column_finds_nothing(factory: sessionmaker[Session]) -> None:
    # only writes are checked: a comparison with a longer value is valid SQL on both databases
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Release).where(Release.version == "v" * 300)) == 0


@pytest.mark.parametrize(("text", "what"), [("web\x00", "a NUL character"), ("web\ud800", "a lone UTF-16 surrogate")])
def test_text_no_database_can_take_is_refused_even_in_a_lookup(
    factory: sessionmaker[Session], text: str, what: str
) -> None:
    # PostgreSQL refuses a NUL in any text parameter, and the driver cannot encode a surrogate
    with pytest.raises(ValueNotStorable, match=rf"^slug contains {what}"), factory() as session:
        session.scalar(select(Project).where(Project.slug == text))


def test_text_inside_a_json_value_is_checked_on_write(factory: sessionmaker[Session]) -> None:
    manifest = {"files": {"a\x00": {}}}  # a key: sentry-cli names files by their paths
    row = {"org": "acme", "checksum": "a" * 40, "manifest": manifest, "data": b"", "created_at": datetime.now(UTC)}
    refused = pytest.raises(ValueNotStorable, match=r"manifest contains a NUL character .*artifact_bundles.manifest")
    with refused, transaction(factory) as session:
        session.execute(insert(ArtifactBundle), [row])
