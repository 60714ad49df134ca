"""Alembic environment: runs the revisions on the connection ``rag.db.migrate`` hands over.

``rag.db.migrate`` opens the connection, takes the migration lock and begins the
transaction, then passes the connection in ``config.attributes["connection"]``;
Alembic joins that transaction. Without one (a developer writing a revision, see
``rag.db.migrate.alembic_config``), an engine is made from ``sqlalchemy.url``.

SQLite cannot alter most of a table in place, so its migrations run in batch
mode (copy into a new table, drop, rename).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, MetaData, create_engine, make_url, pool

config = context.config


def target_metadata(dialect: str) -> list[MetaData]:
    """The tables the revisions should produce on this backend (what autogenerate compares).

    The models, the shared blob store's table, and on PostgreSQL the search
    store's tables. Imported here, not at module level, so that the revisions
    never depend on them.
    """
    from rag.blobs import BLOB_METADATA
    from rag.db.models import Base

    metadatas = [Base.metadata, BLOB_METADATA]
    if dialect == "postgresql":
        from rag.store.pg_schema import metadata as pg_search_metadata

        metadatas.append(pg_search_metadata)
    return metadatas


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(connection.dialect.name),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Write the SQL of the migrations instead of running them (``alembic upgrade --sql``)."""
    url = make_url(config.get_main_option("sqlalchemy.url") or "")
    context.configure(
        url=url,
        target_metadata=target_metadata(url.get_backend_name()),
        literal_binds=True,
        render_as_batch=url.get_backend_name() == "sqlite",
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
