"""The VectorIndex contract, inherited by every implementation, and FAISS specifics."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from rag.errors import IndexInconsistent, InvalidInput
from rag.index import faiss_index
from rag.index.faiss_index import FaissVectorIndex, omp_threads
from rag.index.numpy_index import NumpyVectorIndex
from rag.protocols import VectorIndex
from rag.settings import IndexSettings

DIM = 32
N = 600


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Ids 1000.. (not positions, so id/row mix-ups show) and their unit vectors."""
    return np.arange(1000, 1000 + N, dtype=np.int64), unit_vectors(N)


def ids_of(hits) -> list[int]:  # type: ignore[no-untyped-def]
    return [h.chunk_id for h in hits]


class VectorIndexContract:
    """Every VectorIndex implementation passes these tests."""

    exact = True  # approximate indexes are compared by overlap instead of equality

    def make(self, dim: int = DIM) -> VectorIndex:
        raise NotImplementedError

    def load(self, path: Path) -> VectorIndex:
        raise NotImplementedError

    def filled(self, data) -> VectorIndex:  # type: ignore[no-untyped-def]
        index = self.make()
        index.add(*data)
        return index

    def assert_matches_reference(self, got, want) -> None:  # type: ignore[no-untyped-def]
        if self.exact:
            assert ids_of(got) == ids_of(want)
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
        else:
            overlap = len(set(ids_of(got)) & set(ids_of(want))) / max(len(want), 1)
            assert overlap >= 0.8

    @pytest.mark.unit
    def test_satisfies_protocol(self) -> None:
        assert isinstance(self.make(), VectorIndex)

    @pytest.mark.unit
    def test_empty_index_returns_nothing(self) -> None:
        index = self.make()
        assert len(index) == 0
        assert index.ids().dtype == np.int64 and len(index.ids()) == 0
        assert index.search(unit_vectors(1)[0], 5) == []

    @pytest.mark.unit
    def test_add_then_search_finds_itself_first(self, data) -> None:  # type: ignore[no-untyped-def]
        ids, x = data
        index = self.filled(data)
        assert len(index) == N
        np.testing.assert_array_equal(index.ids(), np.sort(ids))
        for row in (0, 17, N - 1):
            hits = index.search(x[row], 5)
            assert hits[0].chunk_id == ids[row]
            assert hits[0].score == pytest.approx(1.0, abs=1e-5)
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)

    @pytest.mark.unit
    def test_results_match_exact_reference(self, data) -> None:  # type: ignore[no-untyped-def]
        index = self.filled(data)
        reference = NumpyVectorIndex(DIM)
        reference.add(*data)
        for query in unit_vectors(10, seed=1):
            self.assert_matches_reference(index.search(query, 10), reference.search(query, 10))

    @pytest.mark.unit
    def test_k_larger_than_index_returns_all(self) -> None:
        index = self.make()
        index.add(np.array([5, 6, 7]), unit_vectors(3))
        assert sorted(ids_of(index.search(unit_vectors(1, seed=3)[0], 50))) == [5, 6, 7]

    @pytest.mark.unit
    def test_query_shapes_accepted(self, data) -> None:  # type: ignore[no-untyped-def]
        ids, x = data
        index = self.filled(data)
        assert index.search(x[3].reshape(1, -1), 1)[0].chunk_id == ids[3]
        assert index.search(x[3].astype(np.float64), 1)[0].chunk_id == ids[3]

    @pytest.mark.unit
    def test_removed_ids_are_never_returned(self, data) -> None:  # type: ignore[no-untyped-def]
        ids, x = data
        index = self.filled(data)
        doomed = ids[:40]
        assert index.remove(list(doomed) + [999_999]) == 40
        assert index.remove(doomed) == 0
        assert len(index) == N - 40
        assert not np.isin(doomed, index.ids()).any()
        for row in range(0, 40, 7):
            assert not set(ids_of(index.search(x[row], N))) & set(doomed.tolist())
        reference = NumpyVectorIndex(DIM)
        reference.add(ids[40:], x[40:])
        for query in unit_vectors(5, seed=2):
            self.assert_matches_reference(index.search(query, 10), reference.search(query, 10))

    @pytest.mark.unit
    def test_removed_id_can_be_added_again(self, data) -> None:  # type: ignore[no-untyped-def]
        ids, x = data
        index = self.filled(data)
        index.remove([ids[0]])
        fresh = unit_vectors(1, seed=9)
        index.add(np.array([ids[0]]), fresh)
        assert len(index) == N
        hit = index.search(fresh[0], 1)[0]
        assert hit.chunk_id == ids[0] and hit.score == pytest.approx(1.0, abs=1e-5)

    @pytest.mark.unit
    def test_allowed_ids_restrict_results(self, data) -> None:  # type: ignore[no-untyped-def]
        ids, x = data
        index = self.filled(data)
        index.remove(ids[:5])
        allowed = np.concatenate((ids[:10], ids[100:130], [123_456_789]))
        hits = index.search(x[0], 100, allowed_ids=allowed)
        assert set(ids_of(hits)) == set(ids[5:10].tolist()) | set(ids[100:130].tolist())
        reference = NumpyVectorIndex(DIM)
        reference.add(ids[5:], x[5:])
        want = reference.search(x[0], 7, allowed_ids=allowed)
        got = index.search(x[0], 7, allowed_ids=allowed)
        assert ids_of(got) == ids_of(want)  # filtered search is exact for every index
        assert index.search(x[0], 5, allowed_ids=np.array([], dtype=np.int64)) == []
        assert index.search(x[0], 5, allowed_ids=ids[:5]) == []

    @pytest.mark.unit
    def test_duplicate_ids_are_rejected(self, data) -> None:  # type: ignore[no-untyped-def]
        ids, x = data
        index = self.make()
        with pytest.raises(InvalidInput, match="repeat"):
            index.add(np.array([1, 2, 1]), unit_vectors(3))
        assert len(index) == 0
        index.add(ids[:10], x[:10])
        with pytest.raises(InvalidInput, match="already"):
            index.add(np.array([ids[3], 77]), unit_vectors(2))
        assert len(index) == 10

    @pytest.mark.unit
    def test_bad_arguments_are_rejected(self, data) -> None:  # type: ignore[no-untyped-def]
        index = self.filled(data)
        with pytest.raises(InvalidInput, match="shape"):
            index.add(np.array([1]), np.ones((1, DIM + 1), dtype=np.float32))
        with pytest.raises(InvalidInput, match="one id per vector"):
            index.add(np.array([1, 2]), unit_vectors(3))
        with pytest.raises(InvalidInput, match="NaN"):
            index.add(np.array([1]), np.full((1, DIM), np.nan, dtype=np.float32))
        with pytest.raises(InvalidInput, match="k must be at least 1, got 0"):
            index.search(data[1][0], 0)
        with pytest.raises(InvalidInput, match=f"{DIM} values"):
            index.search(np.ones(DIM + 1, dtype=np.float32), 3)

    @pytest.mark.unit
    def test_vectors_returns_stored_rows(self, data) -> None:  # type: ignore[no-untyped-def]
        ids, x = data
        index = self.filled(data)
        np.testing.assert_allclose(index.vectors(ids[[5, 2, 9]]), x[[5, 2, 9]], atol=1e-6)
        index.remove([ids[2]])
        with pytest.raises(InvalidInput, match="not in the vector index"):
            index.vectors(ids[[5, 2]])

    @pytest.mark.unit
    def test_save_load_round_trip(self, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        ids, x = data
        index = self.filled(data)
        index.remove(ids[::10])
        path = tmp_path / "sub" / "vectors.idx"
        index.save(path)
        assert [p.name for p in path.parent.iterdir()] == ["vectors.idx"]  # no temp left
        loaded = self.load(path)
        np.testing.assert_array_equal(loaded.ids(), index.ids())
        for query in unit_vectors(5, seed=4):
            assert ids_of(loaded.search(query, 10)) == ids_of(index.search(query, 10))
        assert not set(ids_of(loaded.search(x[0], N))) & set(ids[::10].tolist())
        loaded.add(np.array([5_000_000]), x[:1])  # still writable after load
        assert len(loaded) == len(index) + 1

    @pytest.mark.unit
    def test_load_rejects_a_foreign_file(self, tmp_path: Path) -> None:
        path = tmp_path / "junk.idx"
        path.write_bytes(b"not an index at all" * 10)
        with pytest.raises(IndexInconsistent, match="rag doctor"):
            self.load(path)
        with pytest.raises(IndexInconsistent):
            self.load(tmp_path / "missing.idx")


class TestNumpyVectorIndex(VectorIndexContract):
    def make(self, dim: int = DIM) -> VectorIndex:
        return NumpyVectorIndex(dim)

    def load(self, path: Path) -> VectorIndex:
        return NumpyVectorIndex.load(path)


class TestFaissFlat(VectorIndexContract):
    def make(self, dim: int = DIM) -> VectorIndex:
        return FaissVectorIndex.create(dim, "flat")

    def load(self, path: Path) -> VectorIndex:
        return FaissVectorIndex.load(path)


class TestFaissHnsw(VectorIndexContract):
    exact = False

    def make(self, dim: int = DIM) -> VectorIndex:
        return FaissVectorIndex.create(dim, "hnsw", hnsw_m=16, ef_search=64, ef_construction=40)

    def load(self, path: Path) -> VectorIndex:
        return FaissVectorIndex.load(path)


# ---------------------------------------------------------------- FAISS specifics


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_saved_file_no_longer_holds_removed_vectors(kind: str, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids, x = data
    index = FaissVectorIndex.create(DIM, kind)
    index.add(ids, x)
    index.remove([ids[3]])
    assert index.tombstone_count == (1 if kind == "hnsw" else 0)
    path = tmp_path / "v.faiss"
    index.save(path)
    raw = path.read_bytes()
    assert x[4].tobytes() in raw  # a live vector is stored verbatim, so the probe works
    assert x[3].tobytes() not in raw
    assert x[3].tobytes() not in FaissVectorIndex.load(path)._stored_vectors().tobytes()


@pytest.mark.unit
def test_hnsw_tombstones_survive_save_and_trigger_rebuild(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids, x = data
    index = FaissVectorIndex.create(DIM, "hnsw", hnsw_m=16)
    index.add(ids, x)
    index.remove(ids[:50])
    assert index.tombstone_count == 50
    index.save(tmp_path / "h.faiss")
    loaded = FaissVectorIndex.load(tmp_path / "h.faiss")
    assert loaded.tombstone_count == 50 and len(loaded) == N - 50
    assert ids[0] not in ids_of(loaded.search(x[0], 20))
    # past 20% of the nodes the graph is rebuilt without the dead ones
    loaded.remove(ids[50:130])
    assert loaded.tombstone_count == 0
    assert len(loaded) == N - 130 and loaded._index.ntotal == N - 130
    assert loaded.search(x[200], 1)[0].chunk_id == ids[200]


@pytest.mark.unit
def test_large_filter_uses_faiss_selector(data, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    ids, x = data
    monkeypatch.setattr(faiss_index, "EXACT_FILTER_MAX", 0)
    reference = NumpyVectorIndex(DIM)
    reference.add(ids, x)
    allowed = ids[::2]  # 300 of 600 > 10%: the IDSelectorBatch path
    for kind in ("flat", "hnsw"):
        index = FaissVectorIndex.create(DIM, kind)
        index.add(ids, x)
        index.remove(ids[:4])
        for query in unit_vectors(5, seed=6):
            got = index.search(query, 10, allowed_ids=allowed)
            want = reference.search(query, 10, allowed_ids=allowed[2:])
            assert set(ids_of(got)) <= set(allowed[2:].tolist())
            overlap = len(set(ids_of(got)) & set(ids_of(want)))
            assert overlap == 10 if kind == "flat" else overlap >= 8


@pytest.mark.unit
def test_rebuild_changes_kind_and_keeps_live_vectors(data) -> None:  # type: ignore[no-untyped-def]
    ids, x = data
    flat = FaissVectorIndex.create(DIM, "flat")
    flat.add(ids, x)
    flat.remove(ids[:10])
    hnsw = flat.rebuild("hnsw")
    assert hnsw.kind == "hnsw" and flat.kind == "flat"
    np.testing.assert_array_equal(hnsw.ids(), flat.ids())
    assert hnsw.search(x[20], 1)[0].chunk_id == ids[20]
    back = hnsw.rebuild("flat")
    np.testing.assert_allclose(back.vectors(ids[10:20]), x[10:20], atol=1e-6)


@pytest.mark.unit
def test_search_restores_the_openmp_thread_count(data) -> None:  # type: ignore[no-untyped-def]
    index = FaissVectorIndex.create(DIM, "flat", search_threads=1)
    index.add(*data)
    previous = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(2)
        index.search(data[1][0], 3)
        assert faiss.omp_get_max_threads() == 2
        with omp_threads(1):
            assert faiss.omp_get_max_threads() == 1
        assert faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(previous)


@pytest.mark.unit
def test_from_settings_picks_the_kind() -> None:
    settings = IndexSettings(hnsw_threshold=1000, hnsw_m=8, hnsw_ef_search=40)
    assert FaissVectorIndex.from_settings(DIM, settings, expected_size=10).kind == "flat"
    big = FaissVectorIndex.from_settings(DIM, settings, expected_size=5000)
    assert big.kind == "hnsw" and big.hnsw_m == 8 and big.ef_search == 40
    forced = IndexSettings(vector_kind="flat")
    assert FaissVectorIndex.from_settings(DIM, forced, expected_size=10**7).kind == "flat"


@pytest.mark.unit
def test_constructor_validates_parameters() -> None:
    with pytest.raises(InvalidInput, match="kind must be 'flat' or 'hnsw', got 'ivf'"):
        FaissVectorIndex(DIM, "ivf")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="dim must be a positive integer, got 0"):
        FaissVectorIndex(0)
    with pytest.raises(InvalidInput, match="search_threads must be an integer >= 1, got 0"):
        FaissVectorIndex(DIM, search_threads=0)
    with pytest.raises(InvalidInput, match="dim must be a positive integer"):
        NumpyVectorIndex(-3)
