"""A local chat model run in-process with Hugging Face transformers.

The default model is the bundled SmolLM2-135M-Instruct GGUF. transformers
de-quantises a GGUF file on every load (about 17 s for this model on two
cores), so the first load saves the converted model as safetensors under the
cache folder and later starts load that instead (about a second).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ConfigError, GeneratorUnavailable, InvalidInput
from rag.hardware import cpu_has_fast_bf16, usable_cores
from rag.settings import GeneratorSettings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# End-of-turn markers of common chat templates (ChatML, Llama 3, Phi-3, Gemma).
# Generation stops at any of them that the tokenizer knows, besides its eos token.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")

# from_pretrained fails in many ways on a missing, partial or unsupported model (OSError,
# ValueError, KeyError, safetensors' own SafetensorError, ...); all mean the same to the user.
_LOAD_ERRORS = (Exception,)

# Bump when the layout of the converted-model cache changes, so old caches are not reused.
_CACHE_FORMAT = "1"


@dataclass(frozen=True)
class GenerationStats:
    """Timings of the last completion, for benchmarks.

    ``tokens_per_s`` is the decode rate after the first token:
    ``(new_tokens - 1) / (total_s - time_to_first_token_s)``, so prompt
    processing (prefill) does not dilute it.
    """

    prompt_tokens: int
    new_tokens: int
    time_to_first_token_s: float
    total_s: float
    tokens_per_s: float


def resolve_dtype(setting: str, device: str) -> torch.dtype:
    """The torch dtype for a ``GeneratorSettings.dtype`` value on ``device``.

    'auto' is bfloat16 where the hardware computes it natively (a CPU with
    AVX512-BF16/AMX: first token 0.9 s instead of 1.66 s for SmolLM2; a GPU
    that supports it), float16 on other GPUs and float32 on other CPUs.
    """
    import torch

    if setting != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            setting
        ]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


def converted_cache_name(gguf_path: Path) -> str:
    """Folder name of a GGUF file's converted copy: its stem and a hash of path, size and mtime.

    The hash changes when the file is replaced (a new package version), so a
    stale conversion is never loaded.
    """
    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{_CACHE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{gguf_path.stem}-{digest}"


# GGUF metadata value types and their sizes in bytes (8 = string, 9 = array).
_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_GGUF_SCALAR |= {11: "<q", 12: "<d"}


def gguf_context_length(path: Path) -> int | None:
    """``<architecture>.context_length`` from a GGUF file's header, None when absent.

    Reads the key-value pairs in order and stops at the key, so it takes
    microseconds, where a full metadata parse (``gguf.GGUFReader``,
    ``AutoConfig``) takes several seconds on the 49k-entry vocabulary.
    """
    import struct

    def read(fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = handle.read(size)
        if len(data) != size:
            raise EOFError
        return struct.unpack(fmt, data)[0]

    def read_str() -> str:
        return handle.read(read("<Q")).decode("utf-8", errors="replace")

    def skip(value_type: int) -> None:
        if value_type in _GGUF_SCALAR:
            handle.seek(struct.calcsize(_GGUF_SCALAR[value_type]), 1)
        elif value_type == 8:
            handle.seek(read("<Q"), 1)
        elif value_type == 9:
            item_type, count = read("<I"), read("<Q")
            if item_type in _GGUF_SCALAR:
                handle.seek(count * struct.calcsize(_GGUF_SCALAR[item_type]), 1)
            else:
                for _ in range(count):
                    skip(item_type)
        else:
            raise ValueError(f"unknown GGUF value type {value_type}")

    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"GGUF" or read("<I") < 2:
                return None
            read("<Q")  # tensor count
            architecture = None
            for _ in range(read("<Q")):
                key, value_type = read_str(), read("<I")
                if key == "general.architecture" and value_type == 8:
                    architecture = read_str()
                elif architecture and key == f"{architecture}.context_length":
                    if value_type not in _GGUF_SCALAR:
                        return None
                    return int(read(_GGUF_SCALAR[value_type]))
                else:
                    skip(value_type)
    except (OSError, EOFError, ValueError):
        return None
    return None


def _config_context_length(folder: Path) -> int | None:
    """``max_position_embeddings`` from a model folder's config.json, None when absent."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings") or config.get("text_config", {}).get(
        "max_position_embeddings"
    )
    return int(value) if isinstance(value, int) and value > 0 else None


def _load_pretrained(folder: Path, gguf_file: str | None, dtype: torch.dtype) -> tuple[Any, Any]:
    """Tokenizer and causal LM from a local folder (and GGUF file), never downloading."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, **kwargs)
    return tokenizer, model


def _save_converted(tokenizer: Any, model: Any, target: Path) -> None:
    """Save a model loaded from GGUF as safetensors at ``target``, atomically.

    The files are written to a temporary sibling folder that is renamed into
    place, so a crash never leaves a half-written cache that a later start
    would load.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        # transformers marks GGUF-loaded models as quantized and refuses to save
        # them, although architectures without packed GGUF kernels (llama) hold
        # plain de-quantised tensors. Detach the marker for the save only.
        quantizer = getattr(model, "hf_quantizer", None)
        if getattr(quantizer, "packed_modules", None):
            raise ValueError(
                "the model keeps its GGUF weights packed (it loads without de-quantising), "
                "so there is nothing to cache"
            )
        quant_config = getattr(model.config, "quantization_config", None)
        model.hf_quantizer = None
        if quant_config is not None:
            del model.config.quantization_config
        try:
            model.save_pretrained(str(staging))
        finally:
            model.hf_quantizer = quantizer
            if quant_config is not None:
                model.config.quantization_config = quant_config
        tokenizer.save_pretrained(str(staging))
        for path in staging.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            # Another process finished the same conversion first; keep its copy.
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class _CancelCriteria:
    """Stops generation once a stream's consumer has gone away."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class _FirstTokenClock:
    """A generate() streamer that only notes when the first new token arrived."""

    def __init__(self) -> None:
        self.prompt_seen = False
        self.first_token_at: float | None = None

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True  # generate() first puts the prompt
        elif self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass


class TransformersGenerator:
    """Generator running a local Hugging Face causal LM (default: the bundled SmolLM2 GGUF).

    The model loads on first use (or :meth:`load`), once per instance. One
    lock guards loading and another serialises generation: a CPU model gains
    nothing from running two requests at once, and the model's caches are not
    safe to share between threads.

    Attributes:
        name: ``"transformers:<model>"``.
        prompt_excerpts: Whether the pipeline shows the model excerpts (the
            reader's best sentences) instead of whole chunks.
        load_seconds: Wall time of the load, None before it.
        loaded_from_cache: Whether the converted GGUF cache was used.
        last_stats: Timings of the last completion, None before it.
    """

    def __init__(self, settings: GeneratorSettings, cache_dir: Path | None = None) -> None:
        """Resolve the model location without loading it.

        Args:
            settings: Generator settings (model, gguf_file, device, dtype, ...).
            cache_dir: Folder for converted GGUF models (typically inside the
                data directory); None disables the cache.

        Raises:
            GeneratorUnavailable: the model folder or GGUF file does not exist.
        """
        self.settings = settings
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.folder, self.gguf_file = self._locate(settings)
        label = Path(self.gguf_file).stem if self.gguf_file else self.folder.name
        self.name = f"transformers:{label}"
        # The bundled 135M model is shown the reader's best sentences, not whole chunks
        # (rag.query.pipeline): measured on SQuAD and CMRC it answered no better from
        # five chunks and took several times longer to read them.
        self.prompt_excerpts = settings.model == "bundled"
        self.load_seconds: float | None = None
        self.loaded_from_cache = False
        self.last_stats: GenerationStats | None = None
        self._tokenizer: Any = None
        self._model: Any = None
        self._dtype: torch.dtype | None = None
        self._stop_ids: list[int] = []
        self._context_length: int | None = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        # Fast tokenizers may reconfigure padding/truncation on each encode call, which
        # raises "Already borrowed" when two threads encode at once.
        self._tokenize_lock = threading.Lock()

    @staticmethod
    def _locate(settings: GeneratorSettings) -> tuple[Path, str | None]:
        if settings.model == "bundled":
            from rag.generation.bundled import bundled_generator_model

            try:
                folder, bundled_file = bundled_generator_model()
            except ConfigError as exc:
                raise GeneratorUnavailable(exc.message) from exc
            return folder, settings.gguf_file or bundled_file
        folder = Path(settings.model).expanduser()
        if not folder.is_dir():
            raise GeneratorUnavailable(
                f"generator model folder {folder} does not exist; set RAG_GENERATOR__MODEL to a "
                f"local Hugging Face model folder, or to 'bundled' for the SmolLM2 model"
            )
        if settings.gguf_file and not (folder / settings.gguf_file).is_file():
            raise GeneratorUnavailable(
                f"GGUF file {settings.gguf_file} is not in {folder}; set RAG_GENERATOR__GGUF_FILE "
                f"to the name of a .gguf file in that folder, or unset it"
            )
        if not settings.gguf_file and not (folder / "config.json").is_file():
            raise GeneratorUnavailable(
                f"{folder} holds no config.json, so it is not a Hugging Face model folder; point "
                f"RAG_GENERATOR__MODEL at one, or set RAG_GENERATOR__GGUF_FILE for a GGUF file"
            )
        return folder, settings.gguf_file

    # ----------------------------------------------------------------- loading

    @property
    def cache_path(self) -> Path | None:
        """Where the converted GGUF model is (or will be) cached; None when not cached."""
        if not (self.gguf_file and self.settings.cache_converted and self.cache_dir):
            return None
        return self.cache_dir / converted_cache_name(self.folder / self.gguf_file)

    def load(self) -> None:
        """Load tokenizer and model now (otherwise the first call does); idempotent."""
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is None:
                self._load()

    def _load(self) -> None:
        import torch

        device = self.settings.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise GeneratorUnavailable(
                f"generator device {device!r} was requested but torch sees no CUDA GPU; install "
                f"a CUDA build of torch or set RAG_GENERATOR__DEVICE=cpu"
            )
        dtype = resolve_dtype(self.settings.dtype, device)
        started = time.perf_counter()
        cache = self.cache_path
        tokenizer = model = None
        try:
            if cache is not None and (cache / "config.json").is_file():
                try:
                    tokenizer, model = _load_pretrained(cache, None, dtype)
                    self.loaded_from_cache = True
                except _LOAD_ERRORS as exc:
                    log.warning("converted model cache unusable path=%s error=%s", cache, exc)
                    shutil.rmtree(cache, ignore_errors=True)  # converted again below
            if model is None:
                # A GGUF is converted in float32, which holds its de-quantised values
                # exactly, so one cached copy serves every dtype.
                load_dtype = torch.float32 if cache is not None else dtype
                tokenizer, model = _load_pretrained(self.folder, self.gguf_file, load_dtype)
                if cache is not None:
                    self._write_cache(tokenizer, model, cache)
        except _LOAD_ERRORS as exc:
            raise GeneratorUnavailable(
                f"could not load the generator model from {self.folder}"
                f"{' (' + self.gguf_file + ')' if self.gguf_file else ''}: {exc}; check that the "
                f"folder holds a complete causal language model and its tokenizer"
            ) from exc
        model = model.to(device=device, dtype=dtype)
        model.eval()
        self._stop_ids = self._end_of_turn_ids(tokenizer, model)
        self._dtype = dtype
        self._tokenizer = tokenizer
        self._model = model
        self.load_seconds = time.perf_counter() - started
        log.info(
            "generator loaded model=%s dtype=%s device=%s from_cache=%s seconds=%.2f",
            self.name,
            str(dtype).removeprefix("torch."),
            device,
            self.loaded_from_cache,
            self.load_seconds,
        )

    @staticmethod
    def _write_cache(tokenizer: Any, model: Any, cache: Path) -> None:
        started = time.perf_counter()
        try:
            _save_converted(tokenizer, model, cache)
        except (OSError, ValueError, RuntimeError) as exc:
            # Without a cache the next start is slow again, but this one still works.
            log.warning("could not cache converted model path=%s error=%s", cache, exc)
            return
        log.info(
            "cached converted model path=%s seconds=%.2f", cache, time.perf_counter() - started
        )

    @staticmethod
    def _end_of_turn_ids(tokenizer: Any, model: Any) -> list[int]:
        ids: list[int] = []
        candidates: list[Any] = [tokenizer.eos_token_id, model.generation_config.eos_token_id]
        vocab = tokenizer.get_vocab()
        candidates += [vocab.get(token) for token in END_OF_TURN_TOKENS]
        for value in candidates:
            for token_id in value if isinstance(value, list) else [value]:
                if isinstance(token_id, int) and token_id not in ids:
                    ids.append(token_id)
        return ids

    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer (loads on first access)."""
        self.load()
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The loaded model (loads on first access)."""
        self.load()
        return self._model

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model runs in (loads on first access)."""
        self.load()
        assert self._dtype is not None
        return self._dtype

    @property
    def stop_token_ids(self) -> list[int]:
        """Token ids generation stops at: eos and the chat template's end-of-turn tokens."""
        self.load()
        return list(self._stop_ids)

    # ------------------------------------------------------------- protocol

    @property
    def context_length(self) -> int:
        """Settings override, else the model's ``max_position_embeddings``.

        Read from config.json or the GGUF header without loading the model, so
        checks such as ``isinstance(gen, Generator)`` stay cheap.
        """
        if self.settings.context_length:
            return self.settings.context_length
        if self._context_length is None:
            if self._model is not None:
                value = getattr(self._model.config, "max_position_embeddings", None)
            elif self.gguf_file:
                value = gguf_context_length(self.folder / self.gguf_file)
            else:
                value = _config_context_length(self.folder)
            if not value:
                value = getattr(self.model.config, "max_position_embeddings", None) or 2048
            self._context_length = int(value)
        return self._context_length

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's tokenizer, without special tokens."""
        tokenizer = self.tokenizer
        with self._tokenize_lock:
            return len(tokenizer.encode(text, add_special_tokens=False))

    def generate(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> str:
        """The whole completion of the chat ``messages``, stripped of surrounding whitespace.

        Raises:
            InvalidInput: no messages, or the prompt does not fit the context.
            GeneratorUnavailable: the model cannot be loaded or fails while generating.
        """
        inputs = self._encode(messages, max_new_tokens)
        output = self._run(inputs, max_new_tokens, streamer=_FirstTokenClock(), cancel=None)
        prompt_len = inputs["input_ids"].shape[1]
        return str(self._tokenizer.decode(output[0, prompt_len:], skip_special_tokens=True)).strip()

    def stream(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> Iterator[str]:
        """The completion as text pieces, as they are decoded.

        Generation runs in a background thread; closing the iterator early
        stops it at the next token.

        Raises:
            InvalidInput: no messages, or the prompt does not fit the context.
            GeneratorUnavailable: the model cannot be loaded or fails while generating.
        """
        from transformers import TextIteratorStreamer

        inputs = self._encode(messages, max_new_tokens)

        class _TimedStreamer(TextIteratorStreamer):
            prompt_seen = False
            first_token_at: float | None = None

            def put(self, value: Any) -> None:
                if self.prompt_seen and self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self.prompt_seen = True
                super().put(value)

        streamer = _TimedStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel = threading.Event()
        failures: list[BaseException] = []

        def work() -> None:
            try:
                self._run(inputs, max_new_tokens, streamer=streamer, cancel=cancel)
            except BaseException as exc:
                failures.append(exc)
                streamer.text_queue.put(streamer.stop_signal)

        thread = threading.Thread(target=work, name="rag-generate", daemon=True)
        thread.start()
        finished = False
        try:
            for piece in streamer:
                if piece:
                    yield piece
            finished = True
        finally:
            if not finished:
                cancel.set()
        thread.join()
        if failures:
            raise failures[0]

    # ------------------------------------------------------------ internals

    def _encode(self, messages: Sequence[dict[str, str]], max_new_tokens: int) -> Any:
        if not messages:
            raise InvalidInput("messages must hold at least one chat message, got none")
        if max_new_tokens < 1:
            raise InvalidInput(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        tokenizer = self.tokenizer
        chat = [{"role": m["role"], "content": m["content"]} for m in messages]
        with self._tokenize_lock:
            if getattr(tokenizer, "chat_template", None):
                inputs = tokenizer.apply_chat_template(
                    chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
                )
            else:
                log.warning("tokenizer has no chat template model=%s; using plain text", self.name)
                text = "".join(f"{m['role']}: {m['content']}\n" for m in chat) + "assistant:"
                inputs = tokenizer(text, return_tensors="pt")
        prompt_tokens = inputs["input_ids"].shape[1]
        limit = self.context_length
        if prompt_tokens + max_new_tokens > limit:
            raise InvalidInput(
                f"the prompt is {prompt_tokens} tokens and {max_new_tokens} new tokens were asked "
                f"for, more than the model's context of {limit} tokens; send fewer or shorter "
                f"sources, or lower max_new_tokens"
            )
        return inputs.to(self._model.device)

    def _run(
        self,
        inputs: Any,
        max_new_tokens: int,
        *,
        streamer: Any,
        cancel: threading.Event | None,
    ) -> torch.Tensor:
        import torch

        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "eos_token_id": self._stop_ids,
            "pad_token_id": self._tokenizer.pad_token_id
            if self._tokenizer.pad_token_id is not None
            else self._stop_ids[0],
            "streamer": streamer,
        }
        temperature = self.settings.temperature
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if cancel is not None:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([_CancelCriteria(cancel)])
        with self._generate_lock:
            if cancel is not None and cancel.is_set():
                raise GeneratorUnavailable("generation was cancelled before it started")
            started = time.perf_counter()
            # torch's thread count is process-wide and the embedder sets its own.
            torch.set_num_threads(self.settings.threads or usable_cores())
            try:
                with torch.inference_mode():
                    output = self._model.generate(**inputs, **kwargs)
            except (RuntimeError, ValueError) as exc:
                raise GeneratorUnavailable(
                    f"the model {self.name} failed while generating: {exc}"
                ) from exc
            total = time.perf_counter() - started
        prompt_tokens = int(inputs["input_ids"].shape[1])
        new_tokens = int(output.shape[1]) - prompt_tokens
        first = getattr(streamer, "first_token_at", None)
        ttft = (first - started) if first is not None else total
        decode_s = total - ttft
        self.last_stats = GenerationStats(
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            time_to_first_token_s=ttft,
            total_s=total,
            tokens_per_s=(new_tokens - 1) / decode_s if new_tokens > 1 and decode_s > 0 else 0.0,
        )
        log.debug(
            "generated model=%s prompt_tokens=%d new_tokens=%d ttft_s=%.3f tok_s=%.1f",
            self.name,
            prompt_tokens,
            new_tokens,
            ttft,
            self.last_stats.tokens_per_s,
        )
        return output
