"""On a store that searches in a database server, the keyword leg runs beside the dense leg.

The results are those of the two legs one after the other; an error in the
keyword leg reaches the caller; the embedded store keeps both legs in the
caller's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.service import build_ingest_service
from rag.errors import InvalidInput
from rag.knowledge_base import KnowledgeBase
from rag.services import Services, build_services
from tests.conftest import fast_settings

pytestmark = pytest.mark.integration

DOCS = {
    "tea.md": "Green tea is steamed or pan-fired soon after picking to stop oxidation.",
    "coffee.md": "Espresso is brewed by forcing hot water through finely ground coffee.",
    "cocoa.md": "Cocoa beans are fermented, dried and roasted before they become chocolate.",
    "bcpl.md": "BCPL was designed by Martin Richards at Cambridge in 1966.",
}
QUESTIONS = ["how is green tea made", "who designed BCPL", "roasted coffee beans", "chocolate"]


def _services(tmp_path: Path, url: str | None) -> Services:
    extra = {"database_url": url} if url else {}
    services = build_services(fast_settings(tmp_path / "kb", **extra))
    ingest = build_ingest_service(services)
    for name, text in DOCS.items():
        assert ingest.ingest_bytes(text.encode(), name).ok
    return services


@pytest.fixture(params=["files", "postgres"])
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    made = _services(tmp_path, url)
    yield made
    made.close()


def _keyword_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the threads that run ``KnowledgeBase.search_sparse`` from now on."""
    seen: list[str] = []
    original = KnowledgeBase.search_sparse

    def recorded(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(KnowledgeBase, "search_sparse", recorded)
    return seen


def test_hybrid_hits_equal_the_legs_run_in_turn(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    retriever = services.retriever()
    off_process = services.kb.searches_off_process
    assert off_process == (services.kb.store.name == "postgres")
    threads = _keyword_threads(monkeypatch)
    overlapped = [retriever.retrieve(q, top_k=4) for q in QUESTIONS]
    expected_thread = "bm25-leg" if off_process else threading.current_thread().name
    assert threads == [expected_thread] * len(QUESTIONS)
    monkeypatch.setattr(type(services.kb.store), "searches_off_process", False)
    in_turn = [retriever.retrieve(q, top_k=4) for q in QUESTIONS]
    for a, b in zip(overlapped, in_turn, strict=True):
        assert [(h.chunk_id, h.score) for h in a.hits] == [(h.chunk_id, h.score) for h in b.hits]
        assert a.best_sparse == b.best_sparse and a.best_dense == b.best_dense
        assert a.timings["sparse"] > 0 and a.timings["dense"] > 0
    assert overlapped[1].hits[0].filename == "bcpl.md"


def test_sparse_mode_stays_in_the_callers_thread(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _keyword_threads(monkeypatch)
    services.retriever().retrieve("green tea", top_k=2, mode="sparse")
    assert threads == [threading.current_thread().name]


def test_an_error_in_the_keyword_leg_reaches_the_caller(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise InvalidInput("keyword leg failed")

    monkeypatch.setattr(KnowledgeBase, "search_sparse", broken)
    with pytest.raises(InvalidInput, match="keyword leg failed"):
        services.retriever().retrieve("green tea", top_k=2)
    assert not [t for t in threading.enumerate() if t.name == "bm25-leg"]
