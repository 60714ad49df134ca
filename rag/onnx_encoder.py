"""The single-query encoder on ONNX Runtime: same vectors as sentence-transformers, 3-4x faster.

A question is one short text, and torch's per-call overhead dominates it
(PERFORMANCE.md: 12.7 ms with sentence-transformers, 4.2 ms with ONNX Runtime
fp32 on one thread). The model folder is exported once with ``torch.onnx``
(the transformer plus mean pooling and L2 normalisation in one graph) and
cached next to the knowledge base; documents keep using torch, which batches
well. The exported graph is checked against the torch model before it is
kept (cosine >= 0.9999 on probe sentences in English and Chinese).

ONNX Runtime runs on the calling thread only, with spin-waiting off: its
spinning worker threads slowed torch 4x in the same process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from rag.errors import ConfigError

log = logging.getLogger(__name__)

# Bump when the exported graph changes (inputs, pooling), so old files are not reused.
EXPORT_VERSION = 1
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBES = (
    "What causes the tides in the ocean?",
    "BCPL由谁提出来的？",
    "Vitamin D deficiency increases the risk of fractures in adults over 65.",
)
_MIN_COSINE = 0.9999


def _pooling(model_dir: Path) -> tuple[str, bool]:
    """(pooling mode, normalised) from a sentence-transformers folder's module list."""
    modules = json.loads((model_dir / "modules.json").read_text())
    kinds = [m.get("type", "") for m in modules]
    normalise = any(k.endswith("Normalize") for k in kinds)
    pooling = next((m for m in modules if m.get("type", "").endswith("Pooling")), None)
    if pooling is None:
        raise ConfigError(f"{model_dir}: no pooling module; the ONNX query encoder needs one")
    config = json.loads((model_dir / pooling["path"] / "config.json").read_text())
    mode = "mean" if config.get("pooling_mode_mean_tokens") else "cls"
    if not (config.get("pooling_mode_mean_tokens") or config.get("pooling_mode_cls_token")):
        raise ConfigError(f"{model_dir}: only mean or CLS pooling can be exported")
    return mode, normalise


def export_path(model_dir: Path, cache_dir: Path) -> Path:
    """Where the exported graph of ``model_dir`` is cached (keyed by its weights and config)."""
    digest = hashlib.sha256(f"v{EXPORT_VERSION}".encode())
    for name in ("config.json", "modules.json", "1_Pooling/config.json"):
        path = model_dir / name
        if path.exists():
            digest.update(path.read_bytes())
    weights = model_dir / "model.safetensors"
    if weights.exists():
        stat = weights.stat()
        digest.update(f"{stat.st_size}".encode())
        with weights.open("rb") as handle:
            digest.update(handle.read(1 << 20))
    return cache_dir / f"query-encoder-{model_dir.name}-{digest.hexdigest()[:16]}.onnx"


def export(model_dir: Path, target: Path) -> Path:
    """Export the transformer with its pooling to ``target`` (atomically); returns it."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    mode, normalise = _pooling(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            if mode == "mean":
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                vector = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            else:
                vector = hidden[:, 0]
            return torch.nn.functional.normalize(vector, dim=-1) if normalise else vector

    sample = tokenizer([_PROBES[0]], return_tensors="pt")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    axes = {name: {0: "batch", 1: "sequence"} for name in _INPUTS}
    # The tracer warns about Python branches on shapes; the graph is verified after export.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(),
            tuple(sample[name] for name in _INPUTS),
            str(partial),
            input_names=list(_INPUTS),
            output_names=["embedding"],
            dynamic_axes={**axes, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    os.replace(partial, target)
    log.info("query encoder exported path=%s", target)
    return target


class UnreadableGraph(ConfigError):
    """An exported graph file that ONNX Runtime cannot load (e.g. truncated)."""


class OnnxQueryEncoder:
    """Encodes one text at a time with an exported graph on ONNX Runtime.

    Args:
        model_dir: The sentence-transformers folder (its tokenizer is used).
        onnx_path: The exported graph.
        max_tokens: Inputs are truncated to this many tokens (the model's limit).
    """

    def __init__(self, model_dir: Path, onnx_path: Path, max_tokens: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigError(
                "the ONNX query encoder needs onnxruntime: pip install onnxruntime, "
                "or set RAG_EMBEDDING__QUERY_BACKEND=torch"
            ) from exc
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no base class
            raise UnreadableGraph(f"cannot load {onnx_path}: {exc}") from exc
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.max_tokens = max_tokens
        self._lock = threading.Lock()

    def encode(self, text: str) -> np.ndarray:
        """Shape (dimension,) float32 (unit length when the model normalises)."""
        batch = self.tokenizer(
            [text], return_tensors="np", truncation=True, max_length=self.max_tokens
        )
        feed = {name: batch[name].astype(np.int64) for name in _INPUTS if name in batch}
        if "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        with self._lock:  # one session, one thread: calls queue instead of oversubscribing
            (vectors,) = self.session.run(None, feed)
        return np.ascontiguousarray(vectors[0], dtype=np.float32)


def load_or_export(
    model_dir: Path, cache_dir: Path, max_tokens: int, reference: object
) -> OnnxQueryEncoder:
    """The cached encoder, exported and verified against ``reference`` first if needed.

    Args:
        model_dir: The sentence-transformers folder.
        cache_dir: Where exported graphs are kept.
        max_tokens: The model's input limit in tokens (special tokens included).
        reference: A callable text -> vector (the torch model) the export must match.

    Raises:
        ConfigError: The export is impossible or does not reproduce the torch vectors.
    """
    path = export_path(model_dir, cache_dir)
    if path.exists():
        try:
            return OnnxQueryEncoder(model_dir, path, max_tokens)
        except UnreadableGraph as exc:
            log.warning("cached query encoder unreadable, exporting again: %s", exc)
            path.unlink(missing_ok=True)
    export(model_dir, path)
    encoder = OnnxQueryEncoder(model_dir, path, max_tokens)
    for probe in _PROBES:  # a fresh export is checked before it is used
        want = np.asarray(reference(probe), dtype=np.float32)  # type: ignore[operator]
        got = encoder.encode(probe)
        cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want) + 1e-12))
        if cosine < _MIN_COSINE:
            path.unlink(missing_ok=True)
            raise ConfigError(
                f"the exported query encoder disagrees with the torch model (cosine "
                f"{cosine:.5f} on {probe!r}); set RAG_EMBEDDING__QUERY_BACKEND=torch"
            )
    return encoder


__all__ = ["OnnxQueryEncoder", "export", "export_path", "load_or_export"]
