"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL.

On SQLite the raw queue's table lives in a file of its own (`db.queue_database_path`), created by
`make_engine` on connect rather than by a migration: it is compared with the model on its own.
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from detector.store.db import QUEUE_SCHEMA, is_up_to_date, make_engine, upgrade
from detector.store.models import Base, RateWindow, RawItem


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        if engine.dialect.name == "sqlite":
            # Exactly the queue file's tables, which are not in the main file.
            found = sorted((d[0], d[1].name) for d in differences)  # type: ignore[index]
            assert found == [("add_table", "rate_windows"), ("add_table", "raw_items")]
        else:
            assert differences == []
        assert is_up_to_date(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("model", [RawItem, RateWindow])
def test_sqlite_queue_table_matches_the_model(database_url: str, model: type[Base]) -> None:
    engine = make_engine(database_url)
    name = model.__tablename__
    try:
        if engine.dialect.name != "sqlite":
            assert QUEUE_SCHEMA not in inspect(engine).get_schema_names()
            return
        columns = inspect(engine).get_columns(name, schema=QUEUE_SCHEMA)
        expected = model.__table__.columns
        assert [c["name"] for c in columns] == [c.name for c in expected]
        for found, column in zip(columns, expected, strict=True):
            assert str(found["type"]) == str(column.type.compile(dialect=engine.dialect)), column.name
            assert found["nullable"] == column.nullable, column.name
        assert inspect(engine).get_table_names().count(name) == 0  # not in the main file
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        assert is_up_to_date(engine)
    finally:
        engine.dispose()
