"""Answer generators behind the :class:`rag.protocols.Generator` protocol.

- :class:`TransformersGenerator`: a local model in-process (default: the bundled
  SmolLM2-135M-Instruct GGUF).
- :class:`OpenAIGenerator`: any OpenAI-compatible HTTP server.
- :class:`ExtractiveGenerator`: no language model; quotes the best sentences.

The classes are imported on first access, so importing this package does not
load torch or transformers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rag.text.normalize import is_cjk

if TYPE_CHECKING:
    from rag.generation.extractive import ExtractiveGenerator
    from rag.generation.openai_generator import OpenAIGenerator
    from rag.generation.transformers_generator import GenerationStats, TransformersGenerator

__all__ = [
    "ExtractiveGenerator",
    "GenerationStats",
    "OpenAIGenerator",
    "TransformersGenerator",
    "estimate_tokens",
]

_LAZY = {
    "ExtractiveGenerator": "rag.generation.extractive",
    "OpenAIGenerator": "rag.generation.openai_generator",
    "TransformersGenerator": "rag.generation.transformers_generator",
    "GenerationStats": "rag.generation.transformers_generator",
}

# Sub-word tokenizers average about 4 characters per token on English text and
# about one token per Chinese character (often more on small vocabularies).
CHARS_PER_LATIN_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Rough token count when the model's tokenizer is not at hand.

    One token per CJK character plus one per 4 other characters (spaces
    included), rounded up.
    """
    cjk = sum(1 for char in text if is_cjk(char))
    return cjk + math.ceil((len(text) - cjk) / CHARS_PER_LATIN_TOKEN)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
