"""Tables of the PostgreSQL search store (pgvector vectors and BM25 postings in SQL).

They live in their own ``MetaData``: SQLite databases never see them, and
the Alembic revision ``0002_postgres_search`` creates the same tables on
PostgreSQL only (it spells them out rather than importing this module).

* ``chunk_vectors``: one vector per chunk, of no fixed size (collections
  differ in dimension). A big collection gets a *partial expression* HNSW
  index, ``(embedding::vector(D)) vector_ip_ops WHERE collection_id = C AND
  vector_dims(embedding) = D AND chunk_id <= H``: one index per collection
  keeps a search from walking other collections' graphs, the cast gives
  pgvector the fixed size an index needs, and ``H`` (the last chunk at the
  build, also in the index's name) keeps later rows out of the graph (see
  ``rag.store.postgres``).
* ``bm25_postings``: (collection, term, chunk) -> tf and the chunk's length.
  The primary key leads with (collection_id, term) and INCLUDEs tf and
  length, so a query term's postings, its document frequency and all the
  scoring needs are one index-only range scan (no join per posting). There
  is deliberately no foreign key and no ``chunk_id`` index here: with them,
  writing a 2,000-chunk batch (95k postings) took 0.6 s and 0.2 s longer
  (a per-row RI check and a second btree). Removal finds a chunk's postings
  through ``bm25_lengths.terms`` instead.
* ``bm25_lengths``: one row per chunk: its length in tokens (the ``len(d)``
  of BM25) and its distinct terms; cascades from ``chunks``.
* ``bm25_stats``: per collection N and the total length (avgdl = total / N),
  changed only by increments, so concurrent transactions never lose counts.
"""

from __future__ import annotations

import secrets

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.exc import DBAPIError

from rag.db.models import ChunkRow
from rag.errors import ConfigError

metadata = MetaData()

# A Column object rather than the string "chunks.id": the chunks table lives in
# the models' MetaData, which a string reference here could not resolve.
_CHUNK_ID = ChunkRow.__table__.c.id

chunk_vectors = Table(
    "chunk_vectors",
    metadata,
    Column("chunk_id", Integer, ForeignKey(_CHUNK_ID, ondelete="CASCADE"), primary_key=True),
    Column("collection_id", Integer, nullable=False),
    Column("embedding", Vector(), nullable=False),
    # (collection, chunk): a collection's rows, and those added after its HNSW index was built.
    Index("ix_chunk_vectors_collection", "collection_id", "chunk_id"),
)

bm25_postings = Table(
    "bm25_postings",
    metadata,
    Column("collection_id", Integer, nullable=False),
    Column("term", Text, nullable=False),
    Column("chunk_id", Integer, nullable=False),
    Column("tf", Integer, nullable=False),
    Column("length", Integer, nullable=False),
    PrimaryKeyConstraint("collection_id", "term", "chunk_id", postgresql_include=["tf", "length"]),
)

bm25_lengths = Table(
    "bm25_lengths",
    metadata,
    Column("chunk_id", Integer, ForeignKey(_CHUNK_ID, ondelete="CASCADE"), primary_key=True),
    Column("collection_id", Integer, nullable=False),
    Column("length", Integer, nullable=False),
    Column("terms", ARRAY(Text), nullable=False),
    Index("ix_bm25_lengths_collection", "collection_id"),
)

bm25_stats = Table(
    "bm25_stats",
    metadata,
    Column("collection_id", Integer, primary_key=True),
    Column("n_docs", BigInteger, nullable=False),
    Column("total_len", BigInteger, nullable=False),
)

TABLES = (chunk_vectors, bm25_postings, bm25_lengths, bm25_stats)
PGVECTOR_MIN_VERSION = (0, 7)
# pgvector's HNSW indexes `vector` columns of at most this many dimensions.
HNSW_MAX_DIM = 2000


def hnsw_index_prefix(collection_id: int) -> str:
    """What the names of a collection's partial HNSW indexes start with."""
    return f"ix_chunk_vectors_hnsw_{int(collection_id)}_"


def hnsw_index_name(collection_id: int, dim: int, upto: int) -> str:
    """A new name for a collection's HNSW index over its ``dim``-sized vectors up to chunk ``upto``.

    The name records what the index holds (read back by :func:`parse_hnsw_index_name`);
    a random suffix keeps a rebuild's name apart from the index it replaces.
    """
    return f"{hnsw_index_prefix(collection_id)}{int(dim)}_{int(upto)}_{secrets.token_hex(3)}"


def parse_hnsw_index_name(name: str) -> tuple[int, int]:
    """(vector size, last chunk id) an index named by :func:`hnsw_index_name` holds."""
    dim, upto = name.rsplit("_", 3)[1:3]
    return int(dim), int(upto)


def create_hnsw_index_sql(
    name: str,
    collection_id: int,
    dim: int,
    upto: int,
    m: int,
    ef_construction: int,
    *,
    concurrently: bool,
) -> str:
    """DDL of a collection's partial expression HNSW index (inner product)."""
    cid, dim = int(collection_id), int(dim)
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}{name} ON chunk_vectors "
        f"USING hnsw ((embedding::vector({dim})) vector_ip_ops) "
        f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
        f"WHERE {hnsw_predicate_sql(cid, dim, upto)}"
    )


def hnsw_predicate_sql(collection_id: int, dim: int, upto: int | None = None) -> str:
    """A partial index's predicate; a query must repeat it word for word to use the index.

    The size test keeps rows of another size out (a re-embedding's old and new
    vectors meet in one transaction, and an index build reads deleted rows
    too). ``upto`` bounds the index to the chunks it was built over: later
    rows are not inserted into the graph (an HNSW insert costs milliseconds,
    more than everything else an ingest writes) but scanned exactly, until
    the next rebuild takes them in. None: the whole collection (exact scan).
    """
    where = f"collection_id = {int(collection_id)} AND vector_dims(embedding) = {int(dim)}"
    return where if upto is None else f"{where} AND chunk_id <= {int(upto)}"


def ensure_pgvector(connection: Connection) -> None:
    """Create the ``vector`` extension if it is missing, and check its version.

    Raises:
        ConfigError: pgvector is not installed on the server, or older than 0.7.
    """
    try:
        with connection.begin_nested():
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    except DBAPIError as exc:
        raise ConfigError(
            "the PostgreSQL search store needs the pgvector extension: install pgvector "
            ">= 0.7 on the database server (https://github.com/pgvector/pgvector) and let "
            f"this database user run CREATE EXTENSION vector ({exc.orig})"
        ) from exc
    version = connection.execute(
        text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    ).scalar_one()
    if tuple(int(p) for p in version.split(".")[:2]) < PGVECTOR_MIN_VERSION:
        raise ConfigError(
            f"pgvector {version} is installed but the PostgreSQL search store needs >= 0.7 "
            "(HNSW on expressions, halfvec); run ALTER EXTENSION vector UPDATE"
        )


def create_schema(connection: Connection) -> None:
    """Create the extension and the store's tables where missing (tests, development).

    Deployments get them from the Alembic revision ``0002_postgres_search``.
    """
    ensure_pgvector(connection)
    metadata.create_all(connection, checkfirst=True)


def missing_tables(connection: Connection) -> list[str]:
    """Names of the store's tables this database lacks."""
    have = set(inspect(connection).get_table_names())
    return [t.name for t in TABLES if t.name not in have]


__all__ = [
    "HNSW_MAX_DIM",
    "TABLES",
    "bm25_lengths",
    "bm25_postings",
    "bm25_stats",
    "chunk_vectors",
    "create_hnsw_index_sql",
    "create_schema",
    "ensure_pgvector",
    "hnsw_index_name",
    "hnsw_index_prefix",
    "hnsw_predicate_sql",
    "parse_hnsw_index_name",
    "metadata",
    "missing_tables",
]
