"""The ONNX query encoder reproduces the torch model's vectors and is exported once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.embedding import SentenceTransformerEmbedder
from rag.errors import ConfigError
from rag.onnx_encoder import export_path
from rag.settings import load_settings

pytestmark = pytest.mark.integration

QUERIES = [
    "How do solar panels turn sunlight into electricity?",
    "2013年于乐状态有了什么变化？",
    "BCPL由谁提出来的？ Martin Richards 1966",
    "",
]


def test_onnx_vectors_equal_the_torch_model(real_embedder) -> None:
    assert real_embedder.query_backend == "onnx"
    for query in QUERIES:
        got = real_embedder.embed_query(query)
        want = real_embedder._fp32_vector(query)
        assert got.dtype == np.float32 and got.shape == (real_embedder.dimension,)
        assert float(got @ want) > 0.9999, query
        assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-4


def test_long_queries_are_truncated_like_the_model(real_embedder) -> None:
    query = "solar " * 2000
    assert float(real_embedder.embed_query(query) @ real_embedder._fp32_vector(query)) > 0.9999


def test_export_is_cached_and_reused(real_embedder, tmp_path: Path) -> None:
    models = real_embedder._models_dir
    exported = export_path(Path(real_embedder._path), models)
    assert exported.is_file()
    before = exported.stat().st_mtime_ns
    again = SentenceTransformerEmbedder(load_settings().embedding, models_dir=models)
    again._model = real_embedder.model  # share the loaded torch model
    again.embed_query("reuse the file")
    assert again.query_backend == "onnx" and exported.stat().st_mtime_ns == before


def test_torch_backend_and_a_broken_cache_exported_again(real_embedder, tmp_path: Path) -> None:
    torch_only = SentenceTransformerEmbedder(
        load_settings(embedding={"query_backend": "torch"}).embedding, models_dir=tmp_path
    )
    torch_only._model = real_embedder.model
    torch_only.embed_query("torch answers")
    assert torch_only.query_backend == "torch" and not list(tmp_path.iterdir())

    broken = export_path(Path(real_embedder._path), tmp_path)
    broken.write_bytes(b"not an onnx graph")
    auto = SentenceTransformerEmbedder(load_settings().embedding, models_dir=tmp_path)
    auto._model = real_embedder.model
    vector = auto.embed_query("a broken cache is exported again")
    assert auto.query_backend == "onnx" and broken.stat().st_size > 1_000_000
    assert float(vector @ real_embedder._fp32_vector("a broken cache is exported again")) > 0.9999

    strict = SentenceTransformerEmbedder(
        load_settings(embedding={"query_backend": "onnx"}).embedding, models_dir=None
    )
    with pytest.raises(ConfigError, match="data directory"):
        strict.embed_query("no folder to cache the export in")
