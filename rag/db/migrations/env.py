"""Alembic environment: runs the revisions on the connection ``rag.db.migrate`` hands over.

``rag.db.migrate`` opens the connection, takes the migration lock and begins the
transaction, then passes the connection in ``config.attributes["connection"]``;
Alembic joins that transaction. Without one (the ``alembic`` command pointed at
this folder by a developer), an engine is made from ``sqlalchemy.url``.

SQLite cannot alter most of a table in place, so its migrations run in batch
mode (copy into a new table, drop, rename).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from rag.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Write the SQL of the migrations instead of running them (``alembic upgrade --sql``)."""
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=bool(url and url.startswith("sqlite")),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on a new one to ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as new_connection:
        _configure_and_run(new_connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
