"""Alembic migrations of the SQL schema, shipped inside the package (see ``rag.db.migrate``)."""
