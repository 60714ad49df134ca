from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from rag.errors import GeneratorUnavailable, InvalidInput
from rag.generation import transformers_generator as tg
from rag.generation.transformers_generator import TransformersGenerator, converted_cache_name
from rag.protocols import Generator
from rag.settings import GeneratorSettings

pytestmark = pytest.mark.unit

QUESTION = [{"role": "user", "content": "hello what is the capital of France"}]


def make(folder: Path, cache_dir: Path | None = None, **overrides) -> TransformersGenerator:
    overrides.setdefault("dtype", "float32")
    settings = GeneratorSettings(model=str(folder), **overrides)
    return TransformersGenerator(settings, cache_dir)


def raw_completion(gen: TransformersGenerator, max_new_tokens: int) -> list[int]:
    """What model.generate itself produces for QUESTION, greedy, same stop tokens."""
    tok = gen.tokenizer
    enc = tok.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    out = gen.model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=gen.stop_token_ids,
        pad_token_id=tok.pad_token_id,
    )
    return out[0, enc["input_ids"].shape[1] :].tolist()


def test_satisfies_protocol_and_loads_lazily(tiny_chat_model: Path) -> None:
    gen = make(tiny_chat_model)
    assert isinstance(gen, Generator)
    assert gen.name == "transformers:model"
    assert gen.context_length == 256  # max_position_embeddings, read from config.json
    assert gen._model is None and gen.load_seconds is None
    gen.load()
    assert gen.load_seconds is not None and gen._model is not None
    assert make(tiny_chat_model, context_length=128).context_length == 128


def test_gguf_context_length_reads_the_header(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    writer.add_array("tokenizer.ggml.scores", [0.5, 0.25, 0.125])
    writer.add_context_length(512)
    writer.add_tensor("w", np.zeros((2, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert tg.gguf_context_length(path) == 512
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf")
    assert tg.gguf_context_length(tmp_path / "bad.gguf") is None


def test_generate_matches_raw_model_and_honours_max_new_tokens(tiny_chat_model: Path) -> None:
    gen = make(tiny_chat_model)
    expected = raw_completion(gen, 8)
    # the seed gives a completion without an end-of-turn token, so the limit is what stops it
    assert len(expected) == 8
    text = gen.generate(QUESTION, max_new_tokens=8)
    assert text == gen.tokenizer.decode(expected, skip_special_tokens=True).strip()
    stats = gen.last_stats
    assert stats is not None
    assert stats.new_tokens == 8
    assert stats.prompt_tokens == 12
    assert 0 < stats.time_to_first_token_s <= stats.total_s
    assert stats.tokens_per_s > 0
    assert len(gen.generate(QUESTION, max_new_tokens=1).split()) == 1
    assert gen.last_stats is not None and gen.last_stats.new_tokens == 1


def test_stops_at_end_of_turn_token(tiny_chat_model: Path) -> None:
    gen = make(tiny_chat_model)
    first = raw_completion(gen, 3)[0]
    assert gen.tokenizer.convert_tokens_to_ids("<|im_end|>") in gen.stop_token_ids
    gen._stop_ids = [*gen._stop_ids, first]  # pretend the first token ends the turn
    assert gen.generate(QUESTION, max_new_tokens=8) == gen.tokenizer.decode([first])
    assert gen.last_stats is not None and gen.last_stats.new_tokens == 1


def test_stream_yields_pieces_that_join_to_generate(tiny_chat_model: Path) -> None:
    gen = make(tiny_chat_model)
    pieces = list(gen.stream(QUESTION, max_new_tokens=8))
    assert len(pieces) >= 2
    assert "".join(pieces).strip() == gen.generate(QUESTION, max_new_tokens=8)
    assert gen.last_stats is not None and gen.last_stats.new_tokens == 8


def test_closing_a_stream_stops_generation_and_frees_the_lock(tiny_chat_model: Path) -> None:
    gen = make(tiny_chat_model)
    stream = gen.stream(QUESTION, max_new_tokens=200)
    next(stream)
    stream.close()
    deadline = time.monotonic() + 10
    while gen._generate_lock.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not gen._generate_lock.locked()
    assert gen.last_stats is not None and gen.last_stats.new_tokens < 200
    assert gen.generate(QUESTION, max_new_tokens=2)


def test_sampling_when_temperature_is_positive(tiny_chat_model: Path) -> None:
    import torch

    gen = make(tiny_chat_model, temperature=1.5)
    outputs = set()
    for seed in range(4):
        torch.manual_seed(seed)
        outputs.add(gen.generate(QUESTION, max_new_tokens=6))
    assert len(outputs) > 1


def test_tokenizer_without_chat_template_falls_back_to_plain_text(tiny_chat_model: Path) -> None:
    gen = make(tiny_chat_model)
    gen.tokenizer.chat_template = None
    assert gen.generate(QUESTION, max_new_tokens=3)
    assert gen.last_stats is not None and gen.last_stats.prompt_tokens == 9  # "user: ..."


def test_count_tokens_uses_the_model_tokenizer(tiny_chat_model: Path) -> None:
    gen = make(tiny_chat_model)
    assert gen.count_tokens("hello what is the capital") == 5
    assert gen.count_tokens("") == 0


def test_prompt_longer_than_context_is_rejected(tiny_chat_model: Path) -> None:
    gen = make(tiny_chat_model)
    long = [{"role": "user", "content": "hello " * 300}]
    with pytest.raises(InvalidInput, match="context of 256 tokens"):
        gen.generate(long, max_new_tokens=4)
    with pytest.raises(InvalidInput, match="at least one"):
        gen.generate([], max_new_tokens=4)


def test_concurrent_requests_are_serialised(tiny_chat_model: Path) -> None:
    gen = make(tiny_chat_model)
    active, peak = [0], [0]
    guard = threading.Lock()

    def wrap(generate):
        def tracked(*args, **kwargs):
            with guard:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            try:
                return generate(*args, **kwargs)
            finally:
                with guard:
                    active[0] -= 1

        return tracked

    results: list[str] = []
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            if i % 2:
                results.append("".join(gen.stream(QUESTION, max_new_tokens=4)))
            else:
                results.append(gen.generate(QUESTION, max_new_tokens=4))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    gen.count_tokens("warm")  # load, then instrument the model before the burst
    gen._model.generate = wrap(gen._model.generate)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(results) == 6 and len({r.strip() for r in results}) == 1
    assert peak[0] == 1


def test_concurrent_first_use_loads_once(
    tiny_chat_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    real_load = tg._load_pretrained

    def counting_load(*args, **kwargs):
        loads.append(args)
        time.sleep(0.2)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tg, "_load_pretrained", counting_load)
    gen = make(tiny_chat_model)
    threads = [threading.Thread(target=gen.count_tokens, args=("hello",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(loads) == 1


def test_missing_folder_or_gguf_file_is_generator_unavailable(
    tmp_path: Path, tiny_chat_model: Path
) -> None:
    with pytest.raises(GeneratorUnavailable, match="does not exist.*RAG_GENERATOR__MODEL"):
        make(tmp_path / "nowhere")
    with pytest.raises(GeneratorUnavailable, match="not a Hugging Face model folder"):
        make(tmp_path)
    with pytest.raises(GeneratorUnavailable, match="missing.gguf is not in"):
        make(tiny_chat_model, gguf_file="missing.gguf")


def test_unloadable_folder_is_generator_unavailable(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    gen = make(tmp_path)
    with pytest.raises(GeneratorUnavailable, match="could not load the generator model"):
        gen.generate(QUESTION, max_new_tokens=2)


def test_cuda_without_gpu_is_generator_unavailable(
    tiny_chat_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    gen = make(tiny_chat_model, device="cuda")
    with pytest.raises(GeneratorUnavailable, match="RAG_GENERATOR__DEVICE=cpu"):
        gen.load()


def test_auto_dtype_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(tg, "cpu_has_fast_bf16", lambda: True)
    assert tg.resolve_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(tg, "cpu_has_fast_bf16", lambda: False)
    assert tg.resolve_dtype("auto", "cpu") == torch.float32
    assert tg.resolve_dtype("float16", "cpu") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert tg.resolve_dtype("auto", "cuda") == torch.bfloat16


def test_bfloat16_runs(tiny_chat_model: Path) -> None:
    import torch

    gen = make(tiny_chat_model, dtype="bfloat16")
    assert gen.generate(QUESTION, max_new_tokens=3)
    assert gen.dtype == torch.bfloat16
    assert next(gen.model.parameters()).dtype == torch.bfloat16


# --- the converted-GGUF cache, with the GGUF load faked by the tiny HF model --------------


@pytest.fixture
def fake_gguf(
    tiny_chat_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, list]:
    """A folder whose 'GGUF' load is served by the tiny model; returns (folder, gguf loads)."""
    folder = tmp_path / "gguf-model"
    shutil.copytree(tiny_chat_model, folder)
    (folder / "tiny.Q4.gguf").write_bytes(b"GGUF-fake")
    gguf_loads: list = []
    real_load = tg._load_pretrained

    def load(path, gguf_file, dtype):
        if gguf_file:
            gguf_loads.append((path, gguf_file, dtype))
            return real_load(path, None, dtype)
        return real_load(path, gguf_file, dtype)

    monkeypatch.setattr(tg, "_load_pretrained", load)
    return folder, gguf_loads


def test_gguf_conversion_is_cached_and_reused(fake_gguf, tmp_path: Path) -> None:
    import torch

    folder, gguf_loads = fake_gguf
    cache_dir = tmp_path / "models"
    first = make(folder, cache_dir, gguf_file="tiny.Q4.gguf", dtype="bfloat16")
    assert first.name == "transformers:tiny.Q4"
    answer = first.generate(QUESTION, max_new_tokens=5)
    assert first.loaded_from_cache is False
    assert len(gguf_loads) == 1 and gguf_loads[0][2] == torch.float32  # converted in fp32
    cached = cache_dir / converted_cache_name(folder / "tiny.Q4.gguf")
    assert first.cache_path == cached
    assert (cached / "config.json").is_file() and (cached / "model.safetensors").is_file()
    assert (cached / "tokenizer.json").is_file()
    assert [p.name for p in cache_dir.iterdir()] == [cached.name]  # no staging folder left

    second = make(folder, cache_dir, gguf_file="tiny.Q4.gguf", dtype="bfloat16")
    assert second.generate(QUESTION, max_new_tokens=5) == answer
    assert second.loaded_from_cache is True
    assert len(gguf_loads) == 1


def test_corrupt_cache_is_converted_again(fake_gguf, tmp_path: Path) -> None:
    folder, gguf_loads = fake_gguf
    cache_dir = tmp_path / "models"
    make(folder, cache_dir, gguf_file="tiny.Q4.gguf").load()
    cached = cache_dir / converted_cache_name(folder / "tiny.Q4.gguf")
    (cached / "model.safetensors").write_bytes(b"truncated")
    again = make(folder, cache_dir, gguf_file="tiny.Q4.gguf")
    assert again.generate(QUESTION, max_new_tokens=2)
    assert again.loaded_from_cache is False and len(gguf_loads) == 2
    third = make(folder, cache_dir, gguf_file="tiny.Q4.gguf")
    third.load()
    assert third.loaded_from_cache is True and len(gguf_loads) == 2


def test_cache_off_or_without_folder_loads_gguf_each_time(fake_gguf, tmp_path: Path) -> None:
    folder, gguf_loads = fake_gguf
    make(folder, None, gguf_file="tiny.Q4.gguf").load()
    make(folder, tmp_path / "m", gguf_file="tiny.Q4.gguf", cache_converted=False).load()
    assert len(gguf_loads) == 2
    assert not (tmp_path / "m").exists()


def test_crash_while_saving_leaves_no_cache(
    fake_gguf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, gguf_loads = fake_gguf
    cache_dir = tmp_path / "models"

    def failing_save(self, save_directory, **kwargs):
        (Path(save_directory) / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    from transformers import PreTrainedModel

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", failing_save)
    gen = make(folder, cache_dir, gguf_file="tiny.Q4.gguf")
    assert gen.generate(QUESTION, max_new_tokens=2)  # still answers
    assert list(cache_dir.iterdir()) == []
    monkeypatch.undo()


def test_cache_name_changes_when_the_file_changes(tmp_path: Path) -> None:
    import os

    path = tmp_path / "m.gguf"
    path.write_bytes(b"one")
    before = converted_cache_name(path)
    assert before.startswith("m-") and before == converted_cache_name(path)
    os.utime(path, ns=(1, 1))
    assert converted_cache_name(path) != before


# --- the real bundled model ---------------------------------------------------------------


@pytest.fixture(scope="session")
def bundled_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generator-cache")


@pytest.mark.slow
@pytest.mark.integration
def test_bundled_smollm2_answers_streams_and_caches(bundled_cache_dir: Path) -> None:
    settings = GeneratorSettings(max_new_tokens=24)
    first = TransformersGenerator(settings, bundled_cache_dir)
    assert first.name == "transformers:SmolLM2-135M-Instruct.Q4_1"
    messages = [{"role": "user", "content": "What is the capital of France? Answer briefly."}]
    answer = first.generate(messages, max_new_tokens=24)
    assert "paris" in answer.lower()
    assert first.loaded_from_cache is False
    assert first.context_length == 8192
    assert first.cache_path is not None and (first.cache_path / "model.safetensors").is_file()
    pieces = list(first.stream(messages, max_new_tokens=24))
    assert len(pieces) >= 2 and "".join(pieces).strip() == answer

    second = TransformersGenerator(settings, bundled_cache_dir)
    second.load()
    assert second.loaded_from_cache is True
    assert first.load_seconds is not None and second.load_seconds is not None
    assert second.load_seconds < first.load_seconds / 3
    assert second.generate(messages, max_new_tokens=24) == answer
