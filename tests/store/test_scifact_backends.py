"""A SciFact slice answers the same on PostgreSQL as on the embedded backend (bundled embedder).

The embedded knowledge base is built through the real ingest pipeline, then
copied into PostgreSQL with the path `rag migrate` runs (no re-embedding);
every query goes through the same retriever on both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.beir import load_beir, slice_beir
from eval.metrics import evaluate_run
from eval.runner import build_eval_services, chunk_corpus_ids, run_modes
from rag.db.copy import check_copy_allowed, copy_knowledge_base
from rag.services import build_services
from rag.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODES = ["bm25", "dense", "hybrid-weighted", "hybrid-rrf"]


def test_scifact_slice_ndcg_is_the_same_on_both_backends(
    scifact_dir: Path, tmp_path: Path, real_embedder, pg_url: str
) -> None:
    dataset = slice_beir(load_beir(scifact_dir, "test"), n_queries=30, extra_docs=300, seed=1)
    settings = load_settings(data_dir=tmp_path / "data")
    embedded, chunk_to_doc, _ = build_eval_services(
        dataset, settings, tmp_path / "cache", embedder=real_embedder
    )
    pg_settings = settings.model_copy(update={"data_dir": tmp_path / "pg", "database_url": pg_url})
    postgres = build_services(pg_settings, embedder=real_embedder)
    try:
        check_copy_allowed(embedded.kb, postgres.kb)
        copy_knowledge_base(embedded.kb, postgres.kb)
        assert all(check.consistent for check in postgres.kb.check())
        assert chunk_corpus_ids(postgres.kb) == chunk_to_doc
        runs = {
            name: run_modes(services, chunk_to_doc, dataset.queries, MODES)[0]
            for name, services in (("files", embedded), ("postgres", postgres))
        }
    finally:
        embedded.close()
        postgres.close()
    for mode in MODES:
        ndcg = {
            name: evaluate_run(run[mode], dataset.qrels, ks=(10,)).means["ndcg@10"]
            for name, run in runs.items()
        }
        assert abs(ndcg["files"] - ndcg["postgres"]) <= 0.002, (mode, ndcg)
        assert ndcg["files"] > 0.5, (mode, ndcg)  # a real ranking, not two empty ones
