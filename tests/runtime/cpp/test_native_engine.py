"""The native engine gives the Python engine's tokens: greedy on fp32/int8/int4 engines of
both families, batches of different lengths, LoRA slots, seeded sampling, stops, context."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from tinyllm.runtime import Engine, GenerationConfig
from tinyllm.runtime.native import NativeEngine, NativeGeneration

PROMPTS = [
    "hello",
    "Book a table for four people in Lisbon on Friday evening.",
    "What is 17 plus 25?",
    "The room was spotless",
    "a",
]
GREEDY = GenerationConfig(max_new_tokens=12, ignore_eos=True)
SAMPLED = GenerationConfig(
    max_new_tokens=16, temperature=1.0, top_k=50, top_p=0.9, seed=7, ignore_eos=True
)


def same(native: list[NativeGeneration], python: list) -> None:  # type: ignore[type-arg]
    """Token ids, text, prompt length and finish reason all equal; streamed text joins up."""
    assert [g.token_ids for g in native] == [g.token_ids for g in python]
    assert [g.text for g in native] == [g.text for g in python]
    assert [g.prompt_tokens for g in native] == [g.prompt_tokens for g in python]
    assert [g.finish_reason for g in native] == [g.finish_reason for g in python]
    assert [g.streamed for g in native] == [g.text for g in native]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("engine", ["onnx-cpu-fp32", "onnx-cpu-int8", "onnx-cpu-int4"])
def test_greedy_batches_equal_the_python_engine(
    lib: ctypes.CDLL, llama_engines: Path, qwen2_engines: Path, family: str, engine: str
) -> None:
    bundle = llama_engines if family == "llama" else qwen2_engines
    python = Engine.load(bundle, engine=engine, max_batch=4)
    ids = [python.encode(p) for p in PROMPTS]
    native = NativeEngine(lib, bundle, engine=engine, max_batch=4)
    # 5 prompts of different lengths: a right-padded batch of 4, then 1.
    same(native.generate(ids, GREEDY), python.generate_ids(ids, GREEDY))
    # Text prompts go through the native tokenizer: the same tokens again.
    same(native.generate(PROMPTS, GREEDY), python.generate(PROMPTS, GREEDY))
    native.close()


def test_seeded_sampling_equals_python_and_repeats(lib: ctypes.CDLL, llama_engines: Path) -> None:
    python = Engine.load(llama_engines, max_batch=4)
    native = NativeEngine(lib, llama_engines, max_batch=4)
    ids = [python.encode(p) for p in PROMPTS]
    first = native.generate(ids, SAMPLED)
    same(first, python.generate_ids(ids, SAMPLED))
    assert [g.token_ids for g in native.generate(ids, SAMPLED)] == [g.token_ids for g in first]
    other = native.generate(ids, GenerationConfig(**{**SAMPLED.__dict__, "seed": 8}))
    assert [g.token_ids for g in other] != [g.token_ids for g in first]
    greedy = native.generate(ids, GREEDY)
    assert [g.token_ids for g in greedy] != [g.token_ids[:12] for g in first]
    for config in (  # temperature alone, top-k alone, top-p alone
        GenerationConfig(max_new_tokens=10, temperature=0.7, seed=3, ignore_eos=True),
        GenerationConfig(max_new_tokens=10, temperature=1.3, top_k=5, seed=4, ignore_eos=True),
        GenerationConfig(max_new_tokens=10, temperature=1.0, top_p=0.5, seed=5, ignore_eos=True),
    ):
        same(native.generate(ids, config), python.generate_ids(ids, config))


def test_lora_slots_equal_python_per_adapter(lib: ctypes.CDLL, served: Path) -> None:
    python = Engine.load(served, max_batch=4)
    native = NativeEngine(lib, served, max_batch=4)
    ids = [python.encode(p) for p in PROMPTS[:4]]
    base = python.generate_ids(ids, GREEDY)
    per_task = {t: python.generate_ids(ids, GREEDY, adapter=t) for t in ("sentiment", "booking")}
    assert [g.token_ids for g in per_task["sentiment"]] != [g.token_ids for g in base]
    for task, expected in per_task.items():
        same(native.generate(ids, GREEDY, adapters=[task] * 4), expected)
    # One batch, a different slot per row: each row as its adapter alone gives.
    mixed = native.generate(ids, GREEDY, adapters=["booking", None, "sentiment", "booking"])
    want = [per_task["booking"][0], base[1], per_task["sentiment"][2], per_task["booking"][3]]
    same(mixed, want)


def test_stop_strings_eos_and_streaming(lib: ctypes.CDLL, qwen2_engines: Path) -> None:
    python = Engine.load(qwen2_engines)
    native = NativeEngine(lib, qwen2_engines)
    ids = [python.encode(p) for p in PROMPTS]
    full = python.generate_ids(ids[1:2], GREEDY)[0]
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 2]
    assert stop
    config = GenerationConfig(max_new_tokens=12, stop=(stop, "\n\n"), ignore_eos=True)
    result = native.generate(ids, config)
    same(result, python.generate_ids(ids, config))
    assert result[1].finish_reason == "stop" and stop not in result[1].text
    # The end-of-sequence token ends rows (not ignored here).
    eos = GenerationConfig(max_new_tokens=40)
    same(native.generate(ids, eos), python.generate_ids(ids, eos))


def test_context_limit_ends_with_length(lib: ctypes.CDLL, llama_engines: Path) -> None:
    python = Engine.load(llama_engines, max_seq_len=32)
    native = NativeEngine(lib, llama_engines, max_seq_len=32)
    ids = [python.encode(PROMPTS[1])]
    config = GenerationConfig(max_new_tokens=50, ignore_eos=True)
    result = native.generate(ids, config)
    same(result, python.generate_ids(ids, config))
    assert result[0].finish_reason == "length"
    assert len(ids[0]) + len(result[0].token_ids) == 32


@pytest.mark.slow
def test_smollm2_int4_demo_prompts_equal_python(lib: ctypes.CDLL, smollm2_int4: Path) -> None:
    """The default model as the demo runs it: int4, chat template, greedy; a batch."""
    python = Engine.load(smollm2_int4, max_batch=4)
    prompts = ["What is the capital of France?", *PROMPTS[1:4]]
    ids = [python.encode(p, chat=True) for p in prompts]
    config = GenerationConfig(max_new_tokens=24)
    native = NativeEngine(lib, smollm2_int4, max_batch=4)
    expected = python.generate_ids(ids, config)
    same(native.generate(ids, config), expected)
    assert "Paris" in expected[0].text  # a real model: the tokens are meaningful


def test_threads_share_an_engine(lib: ctypes.CDLL, llama_engines: Path) -> None:
    """Calls from several threads queue on the engine and give the sequential results."""
    from concurrent.futures import ThreadPoolExecutor

    native = NativeEngine(lib, llama_engines, max_batch=2)
    jobs = [([p], c) for p in PROMPTS for c in (GREEDY, SAMPLED)]
    sequential = [native.generate(p, c)[0].token_ids for p, c in jobs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda job: native.generate(*job)[0].token_ids, jobs))
    assert threaded == sequential


def test_an_engine_with_greedy_ids_equals_the_python_engine(
    lib: ctypes.CDLL, tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    """engine.json's ``greedy_ids`` key is accepted; libtinyllm reads the logits (it binds
    outputs by name) and gives the tokens of Python, which reads the ids."""
    import tinyllm

    bundle, _ = tinyllm.export(
        tiny_llama_bundle, "onnx-cpu", tmp_path / "g.tllm", max_seq_len=128, greedy_ids=True
    )
    python = Engine.load(bundle.path, max_batch=4)
    assert python.session.greedy_ids
    ids = [python.encode(p) for p in PROMPTS]
    native = NativeEngine(lib, bundle.path, max_batch=4)
    same(native.generate(ids, GREEDY), python.generate_ids(ids, GREEDY))
    native.close()
    python.close()
