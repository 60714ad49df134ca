"""The PostgreSQL fixture gives each test its own database with pgvector."""

from __future__ import annotations

import sqlalchemy


def test_each_test_gets_an_empty_database_with_pgvector(pg_url: str) -> None:
    engine = sqlalchemy.create_engine(pg_url)
    with engine.connect() as conn:
        version = conn.execute(
            sqlalchemy.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).scalar()
        tables = conn.execute(
            sqlalchemy.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        ).scalar()
    engine.dispose()
    assert version is not None and tuple(int(p) for p in version.split(".")[:2]) >= (0, 7)
    assert tables == 0
