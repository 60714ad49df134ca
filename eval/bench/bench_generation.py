"""Benchmark the bundled generator (SmolLM2-135M-Instruct GGUF); prints a Markdown table.

Measures the model start (the first one converts the GGUF and caches it as
safetensors; later ones load the cache), the time to the first token and the
decode rate for a RAG prompt of about 800 tokens and 128 new tokens. Each
figure of :class:`~rag.generation.transformers_generator.TransformersGenerator`
stands next to a raw ``model.generate`` call doing the same work on the same
loaded model, so the wrapper's overhead shows as a ratio, and next to its
target in ``shared/PERFORMANCE.md``.

Run: ``python -m eval.bench.bench_generation`` (about 2 minutes on 2 cores;
``--dtypes float32`` or ``--dtypes bfloat16`` for one dtype only).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.generation.transformers_generator import TransformersGenerator
from rag.hardware import cpu_has_fast_bf16
from rag.settings import GeneratorSettings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"

# Targets from shared/PERFORMANCE.md for the bundled model on 2 cores.
TARGET_FIRST_TOKEN_S = 1.0
TARGET_DECODE_TOK_S = 16.0
TARGET_START_S = 2.0

SYSTEM = (
    "You answer questions using only the numbered sources. Cite each sentence with the "
    "number of its source in brackets, like [1]. If the sources do not hold the answer, say so."
)
QUESTION = "Summarise in detail what these sources report about their findings and methods."
FALLBACK_PASSAGE = (
    "The study followed 1,200 adults for five years to measure how regular exercise affects "
    "blood pressure. Participants who walked at least thirty minutes a day lowered their "
    "systolic pressure by an average of six points. The effect was larger in people over "
    "sixty and in those who started with high readings. Researchers adjusted for diet, "
    "smoking and medication, and the association remained significant. "
)


def progress(message: str) -> None:
    """A progress line on stderr (the table goes to stdout)."""
    print(f"[bench_generation] {message}", file=sys.stderr, flush=True)


class FirstTokenClock:
    """A generate() streamer that notes when the first new token arrives (nothing else)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_token_at: float | None = None

    def put(self, value: Any) -> None:
        """generate() puts the prompt first, then each new token."""
        self.calls += 1
        if self.calls == 2:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        """Nothing to flush."""


def median_of(fn: Callable[[], float], repeats: int) -> float:
    """Median of ``repeats`` values returned by ``fn``."""
    return statistics.median(fn() for _ in range(repeats))


def load_passages(scifact: Path, count: int = 40) -> list[str]:
    """Abstracts from the SciFact corpus, or a built-in passage when it is absent."""
    path = scifact / "corpus.jsonl.gz"
    if not path.is_file():
        return [FALLBACK_PASSAGE * 2] * count
    passages = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line)["text"]
            if len(text) > 600:
                passages.append(text)
            if len(passages) == count:
                break
    return passages


def rag_chat(sources: Sequence[str]) -> list[dict[str, str]]:
    """System prompt and a user turn holding numbered sources and the question."""
    numbered = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(sources, start=1))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Sources:\n{numbered}\n\n{QUESTION}"},
    ]


def build_messages(
    generator: TransformersGenerator, passages: Sequence[str], prompt_tokens: int
) -> list[dict[str, str]]:
    """A RAG chat whose rendered prompt is as long as possible up to ``prompt_tokens`` tokens."""
    sources: list[str] = []
    for passage in passages:
        if rendered_tokens(generator, rag_chat([*sources, passage])) > prompt_tokens:
            # Fill the rest with the longest prefix of this passage that still fits.
            words = passage.split()
            low, high = 0, len(words)
            while low < high:
                mid = (low + high + 1) // 2
                chat = rag_chat([*sources, " ".join(words[:mid])])
                if rendered_tokens(generator, chat) <= prompt_tokens:
                    low = mid
                else:
                    high = mid - 1
            if low:
                sources.append(" ".join(words[:low]))
            break
        sources.append(passage)
    return rag_chat(sources)


def rendered_tokens(generator: TransformersGenerator, messages: list[dict[str, str]]) -> int:
    """Tokens of the chat as the model sees it (template and generation prompt included)."""
    ids = generator.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    return len(ids)


def bench_load(settings: GeneratorSettings, cache_dir: Path, repeats: int) -> dict[str, Any]:
    """Seconds of the first start (GGUF conversion + cache write) and of a cached start."""
    first = TransformersGenerator(settings, cache_dir)
    first.load()
    assert first.load_seconds is not None and not first.loaded_from_cache
    result: dict[str, Any] = {
        "first": first.load_seconds,
        "dtype": str(first.dtype).removeprefix("torch."),
    }
    del first

    def cached() -> float:
        generator = TransformersGenerator(settings, cache_dir)
        generator.load()
        assert generator.loaded_from_cache and generator.load_seconds is not None
        return generator.load_seconds

    progress(f"first start {result['first']:.1f} s")
    result["cached"] = median_of(cached, repeats)
    progress(f"cached start {result['cached']:.2f} s")
    return result


def bench_dtype(
    dtype: str,
    cache_dir: Path,
    passages: Sequence[str],
    prompt_tokens: int,
    new_tokens: int,
    repeats: int,
) -> dict[str, Any]:
    """Wrapper vs raw ``model.generate`` timings for one dtype."""
    import torch

    settings = GeneratorSettings.model_validate({"dtype": dtype, "max_new_tokens": new_tokens})
    generator = TransformersGenerator(settings, cache_dir)
    generator.load()
    messages = build_messages(generator, passages, prompt_tokens)
    tokenizer, model = generator.tokenizer, generator.model
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    raw_kwargs = {
        "do_sample": False,
        "eos_token_id": generator.stop_token_ids,
        "pad_token_id": tokenizer.pad_token_id,
    }
    generator.generate(messages[-1:], max_new_tokens=4)  # warm-up

    wrapper_runs, raw_runs = [], []
    # Wrapper and raw calls alternate, so drifting load on a shared host hits both alike.
    for _ in range(repeats):
        start = time.perf_counter()
        generator.generate(messages, max_new_tokens=new_tokens)
        wall = time.perf_counter() - start
        assert generator.last_stats is not None
        wrapper_runs.append((wall, generator.last_stats))
        progress(f"{dtype} wrapper: {generator.last_stats}")

        clock = FirstTokenClock()
        start = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **inputs, max_new_tokens=new_tokens, streamer=clock, **raw_kwargs
            )
        total = time.perf_counter() - start
        new = int(output.shape[1] - inputs["input_ids"].shape[1])
        ttft = (clock.first_token_at or start + total) - start
        rate = (new - 1) / (total - ttft) if new > 1 and total > ttft else 0.0
        raw_runs.append((total, ttft, rate, new))
        progress(f"{dtype} raw: {total:.2f} s, ttft {ttft:.2f} s, {rate:.1f} tok/s, {new} new")
    return {
        "dtype": dtype,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "new_tokens": wrapper_runs[0][1].new_tokens,
        "raw_new_tokens": raw_runs[0][3],
        "ttft": statistics.median(s.time_to_first_token_s for _, s in wrapper_runs),
        "tok_s": statistics.median(s.tokens_per_s for _, s in wrapper_runs),
        "total": statistics.median(wall for wall, _ in wrapper_runs),
        "raw_ttft": statistics.median(r[1] for r in raw_runs),
        "raw_tok_s": statistics.median(r[2] for r in raw_runs),
        "raw_total": statistics.median(r[0] for r in raw_runs),
    }


def verdict(ok: bool) -> str:
    """A check mark or a cross for a target."""
    return "met" if ok else "**missed**"


def render(load: dict[str, float], results: Sequence[dict[str, Any]]) -> str:
    """The Markdown table."""
    lines = [
        "| measure | dtype | TransformersGenerator | raw model.generate | ratio | target |",
        "|---|---|---|---|---|---|",
        f"| start, first run (GGUF conversion + cache write) | float32 | "
        f"{load['first']:.1f} s | – | – | – |",
        f"| start, later runs (cached safetensors) | {load['dtype']} | {load['cached']:.2f} s "
        f"| – | {load['first'] / load['cached']:.0f}x faster | <= {TARGET_START_S:.0f} s: "
        f"{verdict(load['cached'] <= TARGET_START_S)} |",
    ]
    for r in results:
        lines += [
            f"| time to first token ({r['prompt_tokens']}-token prompt) | {r['dtype']} | "
            f"{r['ttft']:.2f} s | {r['raw_ttft']:.2f} s | {r['ttft'] / r['raw_ttft']:.2f} | "
            f"<= {TARGET_FIRST_TOKEN_S:.0f} s: {verdict(r['ttft'] <= TARGET_FIRST_TOKEN_S)} |",
            f"| decode rate ({r['new_tokens']} new tokens; raw {r['raw_new_tokens']}) | "
            f"{r['dtype']} | {r['tok_s']:.1f} tok/s | {r['raw_tok_s']:.1f} tok/s | "
            f"{r['tok_s'] / r['raw_tok_s']:.2f} | >= {TARGET_DECODE_TOK_S:.0f} tok/s: "
            f"{verdict(r['tok_s'] >= TARGET_DECODE_TOK_S)} |",
            f"| whole answer (wall) | {r['dtype']} | {r['total']:.2f} s | {r['raw_total']:.2f} s "
            f"| {r['total'] / r['raw_total']:.2f} | – |",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    default_dtypes = ["bfloat16", "float32"] if cpu_has_fast_bf16() else ["float32"]
    parser.add_argument("--dtypes", nargs="+", default=default_dtypes)
    parser.add_argument("--prompt-tokens", type=int, default=800)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0 = torch's default)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    passages = load_passages(args.scifact)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as tmp:
        cache_dir = Path(tmp)
        load = bench_load(GeneratorSettings.model_validate({}), cache_dir, args.repeats)
        results = [
            bench_dtype(d, cache_dir, passages, args.prompt_tokens, args.new_tokens, args.repeats)
            for d in args.dtypes
        ]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("## Generator: bundled SmolLM2-135M-Instruct (Q4_1 GGUF)\n")
    print(render(load, results))
    print(
        f"\nGreedy decoding, medians of {args.repeats} runs, torch threads "
        f"{_torch_threads()}; peak RSS {peak_mb:,.0f} MB; "
        f"benchmark took {time.perf_counter() - started:.0f} s; wrapper and raw calls "
        f"alternate. Both note the first token with a streamer hook; decode rate is "
        f"(new tokens - 1) / (total - time to first token)."
    )


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
