"""Token counting with a Hugging Face fast tokenizer (the embedder's own).

Chunk sizes are measured in the embedding model's tokens, so the chunker and
the embedder share this counter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, InvalidInput

_WHITESPACE_SPLITTERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}


class HFTokenCounter:
    """TokenCounter over a Hugging Face fast tokenizer.

    Uses the Rust backend directly: batched, without special tokens, and
    with the truncation and padding that ``tokenizer.json`` may configure
    switched off (MiniLM's file truncates to 128 tokens, which would make
    every long text look short).
    """

    def __init__(self, tokenizer: Any, batch_size: int = 1024) -> None:
        """Wrap ``tokenizer``.

        Args:
            tokenizer: A ``transformers`` fast tokenizer (anything with a
                ``backend_tokenizer``) or a ``tokenizers.Tokenizer``.
            batch_size: Texts per backend call, bounding memory.

        Raises:
            ConfigError: ``tokenizer`` is a slow (pure Python) tokenizer.
        """
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be >= 1, got {batch_size}")
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        if not hasattr(backend, "encode_batch"):
            raise ConfigError(
                f"HFTokenCounter needs a fast tokenizer, got {type(tokenizer).__name__}: "
                "load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
            )
        from tokenizers import Tokenizer

        config = backend.to_str()
        # A copy, so switching truncation off does not change the caller's tokenizer.
        self._backend = Tokenizer.from_str(config)
        self._backend.no_truncation()
        self._backend.no_padding()
        self._batch_size = batch_size
        # True when a text's count is the sum of its whitespace-separated
        # parts' counts; the chunker then trusts summed sentence counts.
        self.whitespace_additive = _splits_on_whitespace(json.loads(config).get("pre_tokenizer"))

    @classmethod
    def from_folder(cls, folder: str | Path) -> HFTokenCounter:
        """Load the tokenizer saved in a local model folder (never downloads).

        Reads ``tokenizer.json`` with the ``tokenizers`` library when present,
        which avoids importing ``transformers`` (seconds) just to count.

        Raises:
            ConfigError: the folder holds no loadable tokenizer.
        """
        tokenizer_file = Path(folder) / "tokenizer.json"
        try:
            if tokenizer_file.is_file():
                from tokenizers import Tokenizer

                return cls(Tokenizer.from_file(str(tokenizer_file)))
            from transformers import AutoTokenizer

            return cls(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"cannot load a tokenizer from {folder} ({exc}): point the embedding model "
                "path at a folder with tokenizer.json"
            ) from exc

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text, without special tokens."""
        encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
        counts: list[int] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            counts.extend(len(encoding.ids) for encoding in encode(batch, add_special_tokens=False))
        return counts

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text``, in order."""
        encoding = self._backend.encode(text, add_special_tokens=False)
        return [(start, end) for start, end in encoding.offsets if end > start]


def _splits_on_whitespace(pre_tokenizer: dict | None) -> bool:
    """True when the pre-tokenizer (as in tokenizer.json) splits at all whitespace.

    Pre-tokenizers only split, so if any step splits at whitespace no token
    spans it, and the model tokenizes each piece on its own. Metaspace and
    ByteLevel keep the space inside the next token, so they do not qualify.
    """
    if not pre_tokenizer:
        return False
    if pre_tokenizer.get("type") == "Sequence":
        return any(_splits_on_whitespace(step) for step in pre_tokenizer.get("pretokenizers", []))
    return pre_tokenizer.get("type") in _WHITESPACE_SPLITTERS
