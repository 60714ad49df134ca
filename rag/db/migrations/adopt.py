"""Adopting a database made before Alembic: add only what the first revision finds missing.

Versions before the migrations made their tables with ``create_all`` and then
added new columns and indexes to old databases in place. Such a database has
the tables but no ``alembic_version``. ``rag.db.migrate`` runs ``0001_initial``
on it with ``config.attributes["adopt_existing"]`` set; the revision then goes
through :func:`schema_operations`, whose ``create_table`` creates a missing
table but only adds the missing columns of one that exists, and whose
``create_index`` skips an index that exists. Alembic records ``0001_initial``
at the end, as for a new database, and the later revisions run as usual.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

log = logging.getLogger(__name__)


def schema_operations() -> Any:
    """``alembic.op`` itself, or its adopting stand-in on a pre-Alembic database."""
    if context.config.attributes.get("adopt_existing"):
        return AdoptingOperations()
    return op


class AdoptingOperations:
    """``create_table`` / ``create_index`` that leave what exists alone."""

    def f(self, name: str) -> Any:
        """The same as ``op.f``: a name used as given."""
        return op.f(name)

    def create_table(self, name: str, *elements: Any, **kwargs: Any) -> None:
        """Create the table, or add to the existing one the columns it lacks.

        Only additive changes are possible this way: each added column must be
        nullable or have a server default, so the rows already there stay valid.

        Raises:
            RuntimeError: A missing column is NOT NULL without a server default.
        """
        inspector = sa.inspect(op.get_bind())
        if not inspector.has_table(name):
            op.create_table(name, *elements, **kwargs)
            return
        have = {column["name"] for column in inspector.get_columns(name)}
        for column in elements:
            if not isinstance(column, sa.Column) or column.name in have:
                continue
            if column.server_default is None and not column.nullable:
                raise RuntimeError(
                    f"column {name}.{column.name} needs a server default to be added "
                    "to an existing database"
                )
            # SQLite adds a column in place (no batch copy needed).
            op.add_column(name, column)
            log.warning("column added table=%s column=%s", name, column.name)

    def create_index(self, name: str, table_name: str, columns: list[str], **kwargs: Any) -> None:
        """Create the index unless it exists.

        A unique index that existing rows violate (duplicates from before it
        existed) is skipped with a warning, as before the migrations; ``rag
        doctor`` still works on such a database. The attempt runs in a
        savepoint so that on PostgreSQL the failure does not abort the upgrade.
        """
        bind = op.get_bind()
        if name in {index["name"] for index in sa.inspect(bind).get_indexes(table_name)}:
            return
        try:
            with bind.begin_nested():
                op.create_index(name, table_name, columns, **kwargs)
        except (IntegrityError, OperationalError, ProgrammingError) as exc:
            log.warning("index not created name=%s reason=%s", name, exc)
