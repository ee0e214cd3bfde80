"""Alembic environment: runs on the connection handed in by `detector.store.db.upgrade`, or on the URL."""

from __future__ import annotations

from alembic import context

from detector.store.db import make_engine
from detector.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    # `make_engine`, as the application's: on SQLite it attaches the raw queue's file, which migrations use.
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # Batch migrations copy and drop tables: with foreign keys enforced, dropping one would cascade.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()  # end the transaction the statement began, so Alembic's own commits the migration
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations()
