"""Each collection keeps the embedding model its vectors were made with.

Queries embed with the collection's model, collections of different models
are fused per model, a mismatch is an error (never mixed vectors), and a
re-embedding swaps every vector at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ingest.service import IngestService
from rag.embedding import (
    EmbedderRegistry,
    HashingEmbedder,
    canonical_model_name,
    load_embedder,
)
from rag.errors import ConfigError, EmbeddingMismatch, EmbeddingModelNotFound, InvalidInput
from rag.query.retrieval import HybridRetriever
from rag.services import Services, build_services
from rag.types import Chunk
from tests.conftest import fast_settings

pytestmark = pytest.mark.integration

SOLAR = "Solar panels turn sunlight into electricity; inverters feed it into the grid."
TEA = "Green tea is steamed or pan-fired soon after picking to stop oxidation."
COFFEE = "Espresso is brewed by forcing hot water through finely ground coffee."


def _ingest(services: Services, collection: str, docs: dict[str, str]) -> None:
    service = IngestService(services.kb, services.embedder, services.settings.ingest)
    for name, text in docs.items():
        outcome = service.ingest_bytes(text.encode(), name, collection=collection)
        assert outcome.ok, outcome


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    services = build_services(fast_settings(tmp_path / "kb", embedding={"model": "hashing:64"}))
    yield services
    services.close()


def test_model_names_are_canonical() -> None:
    assert canonical_model_name("bundled") == "all-MiniLM-L6-v2"
    assert canonical_model_name("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert canonical_model_name("hashing:32") == canonical_model_name("hashing-32") == "hashing-32"
    assert canonical_model_name("hashing") == "hashing-256"
    assert canonical_model_name("/models/bge-m3") == "/models/bge-m3"


def test_registry_builds_each_model_once() -> None:
    built: list[str] = []

    def factory(name: str) -> HashingEmbedder:
        built.append(name)
        return HashingEmbedder(int(name.removeprefix("hashing-")))

    default = HashingEmbedder(64)
    registry = EmbedderRegistry(default, factory)
    assert registry.get("") is default and registry.get("hashing:64") is default
    first = registry.get("hashing:32")
    assert registry.get("hashing-32") is first and first.dimension == 32
    assert built == ["hashing-32"] and registry.loaded() == ["hashing-32", "hashing-64"]

    def liar(name: str) -> HashingEmbedder:
        return HashingEmbedder(16)

    with pytest.raises(EmbeddingMismatch, match="loaded as 'hashing-16'"):
        EmbedderRegistry(default, liar).get("hashing-8")


def test_load_embedder_turns_an_unloadable_model_into_model_not_found() -> None:
    def refuse(name: str) -> HashingEmbedder:
        raise ConfigError(f"embedding model folder {name} does not exist")

    registry = EmbedderRegistry(HashingEmbedder(64), refuse)
    with pytest.raises(EmbeddingModelNotFound, match="cannot use embedding model './missing'"):
        load_embedder(registry, "./missing")
    with pytest.raises(InvalidInput, match="empty"):
        load_embedder(registry, " ")


def test_collection_records_model_and_dimension_of_its_vectors(services: Services) -> None:
    services.kb.create_collection("empty")
    assert services.kb.get_collection("empty").embedding_model == "hashing-64"
    assert services.kb.get_collection("empty").embedding_dim == 0  # no vectors yet
    _ingest(services, "energy", {"solar.md": SOLAR})
    info = services.kb.get_collection("energy")
    assert (info.embedding_model, info.embedding_dim) == ("hashing-64", 64)
    listed = {c.name: c.to_dict() for c in services.kb.list_collections()}
    assert listed["energy"]["embedding_model"] == "hashing-64"
    assert listed["energy"]["embedding_dim"] == 64


def test_query_embeds_with_the_collection_model(services: Services) -> None:
    _ingest(services, "drinks", {"tea.md": TEA, "coffee.md": COFFEE})
    services.kb.reembed_collection("drinks", services.embedders.get("hashing:32"))
    info = services.kb.get_collection("drinks")
    assert (info.embedding_model, info.embedding_dim) == ("hashing-32", 32)
    hits = services.retriever().retrieve("green tea picking", mode="dense", top_k=2).hits
    assert hits[0].filename == "tea.md"
    # The 64-dimensional default could not have searched 32-dimensional vectors.
    expected = services.embedders.get("hashing-32").embed_query("green tea picking")
    best = services.kb.search_dense(info.id, expected, 1, None)[0]
    assert hits[0].chunk_id == best.chunk_id and hits[0].dense_score == pytest.approx(best.score)


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
def test_collections_of_different_models_are_fused_per_model(
    services: Services, fusion: str
) -> None:
    _ingest(services, "energy", {"solar.md": SOLAR})
    _ingest(services, "drinks", {"tea.md": TEA, "coffee.md": COFFEE})
    services.kb.reembed_collection("drinks", services.embedders.get("hashing:32"))
    retriever = services.retriever()
    both = retriever.retrieve("espresso coffee", top_k=3, fusion=fusion)
    assert both.hits[0].filename == "coffee.md"
    assert {h.collection for h in both.hits} == {"energy", "drinks"}
    assert all(h.dense_rank is not None for h in both.hits)  # each model's dense leg ran
    solar = retriever.retrieve("solar panels grid", top_k=3, fusion=fusion)
    assert solar.hits[0].filename == "solar.md"
    # Each model's collections are ranked on their own: cosines of the two models never
    # meet in one list, so the best energy chunk is first among energy's.
    (energy,) = [h for h in both.hits if h.collection == "energy"]
    assert energy.dense_rank == 1
    with pytest.raises(InvalidInput, match="fits one embedding model"):
        retriever.retrieve("tea", query_vector=np.ones(64, dtype=np.float32) / 8)


def test_ingest_with_another_model_is_refused(services: Services, tmp_path: Path) -> None:
    _ingest(services, "drinks", {"tea.md": TEA})
    services.kb.reembed_collection("drinks", services.embedders.get("hashing:32"))
    service = IngestService(services.kb, services.embedder, services.settings.ingest)
    with pytest.raises(EmbeddingMismatch, match="RAG_EMBEDDING__MODEL=hashing-32"):
        service.ingest_bytes(COFFEE.encode(), "coffee.md", collection="drinks")
    doc = services.kb.begin_document(
        "drinks",
        "x.md",
        media_type="text/markdown",
        size_bytes=1,
        sha256="0" * 64,
        status="failed",
    )
    chunk = Chunk(0, COFFEE, 0, len(COFFEE), 1, 1, 12)
    with pytest.raises(EmbeddingMismatch, match="hashing-64"):
        services.kb.commit_document(doc.id, [chunk], np.ones((1, 64), np.float32) / 8, page_count=1)
    with pytest.raises(EmbeddingMismatch, match="32-dimensional"):
        services.kb.commit_document(
            doc.id, [chunk], np.ones((1, 16), np.float32) / 4, page_count=1, embedding_model=""
        )
    assert services.kb.document_chunks(doc.id) == []  # nothing was mixed in


def test_a_retriever_with_one_embedder_refuses_other_models(services: Services) -> None:
    _ingest(services, "drinks", {"tea.md": TEA})
    services.kb.reembed_collection("drinks", services.embedders.get("hashing:32"))
    single = HybridRetriever(services.kb, services.embedder, services.settings.retrieval)
    with pytest.raises(EmbeddingMismatch, match="has only 'hashing-64'"):
        single.retrieve("green tea", mode="dense")
    vector = services.embedder.embed_query("green tea")
    cid = services.kb.get_collection("drinks").id
    with pytest.raises(EmbeddingMismatch, match="32-dimensional"):
        services.kb.search_dense(cid, vector, 3, None)


def test_reembed_keeps_the_old_index_searchable_and_catches_up(services: Services) -> None:
    _ingest(services, "drinks", {"tea.md": TEA, "coffee.md": COFFEE})
    kb = services.kb
    seen: list[tuple[str, int]] = []

    def during(done: int, total: int) -> None:
        # Mid-way the collection still records and answers with the old model...
        info = kb.get_collection("drinks")
        hits = services.retriever().retrieve("espresso", mode="dense", top_k=1).hits
        seen.append((info.embedding_model, len(hits)))
        if len(seen) == 1:  # ...and takes new documents, which the swap must include.
            _ingest(services, "drinks", {"solar.md": SOLAR})

    after = kb.reembed_collection(
        "drinks", services.embedders.get("hashing:32"), batch_chunks=1, progress=during
    )
    assert seen and all(model == "hashing-64" and n == 1 for model, n in seen)
    assert (after.embedding_model, after.embedding_dim, after.chunks) == ("hashing-32", 32, 3)
    with kb.sessions() as session:
        from sqlalchemy import func, select

        from rag.db.models import ChunkRow

        sizes = set(session.scalars(select(func.length(ChunkRow.embedding))).all())
    assert sizes == {32 * 4}
    assert all(c.consistent for c in kb.check())
    hits = services.retriever().retrieve("solar grid", mode="dense", top_k=1).hits
    assert hits[0].filename == "solar.md"


def test_reembed_entry_replayed_on_start_rebuilds_vectors(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "kb", embedding={"model": "hashing:64"})
    services = build_services(settings)
    _ingest(services, "drinks", {"tea.md": TEA, "coffee.md": COFFEE})
    kb = services.kb
    kb.flush()
    info = kb.get_collection("drinks")
    new = services.embedders.get("hashing:32")
    rows = kb._ready_chunk_texts(info.id)
    ids = np.asarray([i for i, _ in rows], dtype=np.int64)
    # What a process killed right after the SQL transaction leaves: new vectors in SQL,
    # the old vector file on disk.
    kb._commit_reembed(info.id, new.name, 32, ids, new.embed_documents([t for _, t in rows]))
    kb.engine.dispose()
    reopened = build_services(settings)
    try:
        indexes = reopened.kb.store.loaded(info.id)
        assert indexes.vectors is not None and indexes.vectors.dim == 32
        assert all(c.consistent for c in reopened.kb.check())
        hits = reopened.retriever().retrieve("espresso coffee", mode="dense", top_k=1).hits
        assert hits[0].filename == "coffee.md"
    finally:
        reopened.close()


def test_database_from_before_the_dimension_column_is_upgraded(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "kb", embedding={"model": "hashing:64"})
    services = build_services(settings)
    _ingest(services, "legacy", {"tea.md": TEA})
    services.close()
    db = sqlite3.connect(settings.data_dir / "rag.db")
    db.execute("ALTER TABLE collections DROP COLUMN embedding_dim")
    db.execute("DROP TABLE alembic_version")  # a database from before migrations existed
    db.execute("UPDATE collections SET embedding_model = ''")  # recorded nothing back then
    db.commit()
    db.close()
    services = build_services(settings)
    try:
        info = services.kb.get_collection("legacy")
        assert (info.embedding_model, info.embedding_dim) == ("", 0)
        hits = services.retriever().retrieve("green tea", mode="dense", top_k=1).hits
        assert hits[0].filename == "tea.md"  # an unrecorded collection uses the default model
        _ingest(services, "legacy", {"coffee.md": COFFEE})  # and records it with its next commit
        info = services.kb.get_collection("legacy")
        assert (info.embedding_model, info.embedding_dim) == ("hashing-64", 64)
    finally:
        services.close()


def test_dense_gate_per_model(services: Services) -> None:
    retriever = services.retriever()
    e5 = retriever.dense_gate("multilingual-e5-small")
    general = retriever.dense_gate("")
    assert e5.min_score_cjk is not None and e5.min_score_cjk > e5.min_score > general.min_score
    assert general.min_score_cjk is None  # dense_gate_cjk is off by default
    assert general.min_score == services.settings.retrieval.min_dense_score
    # A CJK question passes the cosine gate only under a model whose gate allows it.
    assert retriever._clears_threshold("dense", {"multilingual-e5-small": 0.9}, 0.0, cjk=True)
    assert not retriever._clears_threshold("dense", {"multilingual-e5-small": 0.85}, 0.0, cjk=True)
    assert retriever._clears_threshold("dense", {"multilingual-e5-small": 0.85}, 0.0)
    assert not retriever._clears_threshold("dense", {"hashing-64": 0.99}, 0.0, cjk=True)
    assert not retriever._clears_threshold("dense", {"multilingual-e5-small": 0.5}, 0.0)
    assert retriever._clears_threshold("dense", {"hashing-64": 0.5}, 0.0)
    # Several models asked at once: any model's own gate may pass the question.
    both = {"hashing-64": 0.1, "multilingual-e5-small": 0.9}
    assert retriever._clears_threshold("hybrid", both, 0.0)
