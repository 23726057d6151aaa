"""Engine: tokens equal torch, batching, streaming, sampling, stops, and clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tinyllm
from tinyllm.errors import BundleError, ConfigError, TinyLLMError
from tinyllm.runtime import Engine, GenerationConfig

PROMPTS = [
    "hello",
    "Book a table for four people in Lisbon on Friday evening.",
    "What is 17 plus 25?",
    "The room was spotless",
    "a",
]
GREEDY = GenerationConfig(max_new_tokens=12, ignore_eos=True)


@pytest.mark.parametrize("engine", ["onnx-cpu-fp32", "onnx-standard-fp32"])
def test_greedy_tokens_equal_torch_generate(exported: Path, engine: str) -> None:
    runner = Engine.load(exported, engine=engine)
    loaded = tinyllm.load_torch_model(exported)
    for prompt in PROMPTS:
        ids = runner.encode(prompt)
        with torch.no_grad():
            out = loaded.model.generate(
                torch.tensor([ids]),
                max_new_tokens=12,
                do_sample=False,
                min_new_tokens=12,
                pad_token_id=0,
            )
        expected = out[0, len(ids) :].tolist()
        assert runner.generate_ids([ids], GREEDY)[0].token_ids == expected


@pytest.mark.parametrize("engine", ["onnx-cpu-fp32", "onnx-standard-fp32"])
def test_batch_of_different_lengths_equals_one_by_one(exported: Path, engine: str) -> None:
    runner = Engine.load(exported, engine=engine, max_batch=4)
    batched = runner.generate(PROMPTS, GREEDY)  # 5 prompts: a batch of 4, then 1
    single = [runner.generate(p, GREEDY)[0] for p in PROMPTS]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert [g.prompt_tokens for g in batched] == [len(runner.encode(p)) for p in PROMPTS]


def test_streaming_equals_generate(exported: Path) -> None:
    runner = Engine.load(exported)
    for prompt in PROMPTS[:3]:
        pieces = list(runner.stream(prompt, GREEDY))
        assert len(pieces) > 1
        assert "".join(pieces) == runner.generate(prompt, GREEDY)[0].text


def test_seeded_sampling_is_reproducible(exported: Path) -> None:
    runner = Engine.load(exported)
    config = GenerationConfig(
        max_new_tokens=16, temperature=1.0, top_k=50, top_p=0.9, seed=7, ignore_eos=True
    )
    first = runner.generate(PROMPTS[:2], config)
    again = runner.generate(PROMPTS[:2], config)
    assert [g.token_ids for g in first] == [g.token_ids for g in again]
    other = runner.generate(PROMPTS[:2], GenerationConfig(**{**config.__dict__, "seed": 8}))
    assert [g.token_ids for g in other] != [g.token_ids for g in first]
    greedy = runner.generate(PROMPTS[:2], GREEDY)
    assert [g.token_ids for g in greedy] != [g.token_ids[:12] for g in first]


def test_stop_strings_and_eos(exported: Path) -> None:
    runner = Engine.load(exported)
    full = runner.generate(PROMPTS[1], GREEDY)[0]
    stop = full.text[3:6]
    cut = runner.generate(PROMPTS[1], GenerationConfig(max_new_tokens=12, stop=(stop,)))[0]
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.find(stop)]
    assert full.finish_reason == "length" and len(full.token_ids) == 12


def test_prompt_longer_than_context(exported: Path) -> None:
    runner = Engine.load(exported, max_seq_len=16)
    with pytest.raises(ConfigError, match=r"prompt 0 has \d+ tokens; the engine's context is 16"):
        runner.generate("word " * 40, GREEDY)
    with pytest.raises(ConfigError, match="prompt 0 is empty"):
        runner.generate_ids([[]], GREEDY)
    # A prompt that fits stops at the context limit instead of overflowing it.
    result = runner.generate(
        "one two three", GenerationConfig(max_new_tokens=100, ignore_eos=True)
    )[0]
    assert result.prompt_tokens + len(result.token_ids) == 16 and result.finish_reason == "length"


def test_bad_load_arguments(exported: Path, tiny_llama_bundle: Path) -> None:
    with pytest.raises(
        TinyLLMError, match="device='cuda' needs ONNX Runtime's CUDAExecutionProvider"
    ):
        Engine.load(exported, device="cuda")
    with pytest.raises(ConfigError, match="device must be one of"):
        Engine.load(exported, device="tpu")
    with pytest.raises(BundleError, match="has no engine 'onnx-cpu-int4'; it has: onnx-cpu-fp32"):
        Engine.load(exported, engine="onnx-cpu-int4")
    with pytest.raises(BundleError, match="has no exported engine; run `tinyllm export"):
        Engine.load(tiny_llama_bundle)
    with pytest.raises(ConfigError, match="max_new_tokens must be >= 1"):
        GenerationConfig(max_new_tokens=0)


def test_corrupt_engine_file(exported: Path, tmp_path: Path, reseal) -> None:
    broken = tmp_path / "broken.tllm"
    shutil.copytree(exported, broken)
    model = broken / "engines" / "onnx-cpu-fp32" / "model.onnx"
    model.write_bytes(model.read_bytes()[:200])
    with pytest.raises(BundleError, match=r"model\.onnx: size is 200 bytes"):
        Engine.load(broken)
    reseal(broken)  # even with matching hashes, a broken graph is a clear error
    with pytest.raises(TinyLLMError, match=r"model\.onnx: ONNX Runtime cannot load this engine"):
        Engine.load(broken)


def test_engine_runs_without_torch(exported: Path) -> None:
    script = (
        "import sys\n"
        "for blocked in ('torch', 'transformers'):\n"
        "    sys.modules[blocked] = None\n"
        "from tinyllm.runtime import Engine, GenerationConfig\n"
        f"engine = Engine.load({str(exported)!r})\n"
        "config = GenerationConfig(max_new_tokens=4, ignore_eos=True)\n"
        "print(engine.generate('hello', config)[0].token_ids)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    expected = Engine.load(exported).generate(
        "hello", GenerationConfig(max_new_tokens=4, ignore_eos=True)
    )
    assert json.loads(out.stdout) == expected[0].token_ids


def test_chat_template_rendering(exported: Path) -> None:
    runner = Engine.load(exported)
    ids = runner.encode("hi", chat=True)
    assert runner.tokenizer.decode(ids) == "user\nhi\nassistant\n"  # special tokens removed
    assert ids[0] == runner.tokenizer.tok.token_to_id("<|im_start|>")
    assert np.count_nonzero(np.array(ids) == runner.tokenizer.eos_token_id) == 1


def test_session_binds_adapters_once_and_routes_rows(
    tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    bundle, _ = tinyllm.export(
        tiny_llama_bundle,
        "onnx-cpu",
        tmp_path / "lora.tllm",
        lora_slots=2,
        lora_rank=2,
        max_seq_len=64,
    )
    engine = Engine.load(bundle.path)
    session = engine.session
    tensors = session.empty_lora()
    rng = np.random.default_rng(0)
    for value in tensors.values():
        value[:, 1] = rng.standard_normal(value.shape[2:]).astype(np.float32) * 0.5
    session.set_lora(tensors)
    ids = engine.encode("Book a table for four")
    logits = session.prefill([ids, ids], lora_index=np.array([0, 1])).copy()
    base = Engine.load(bundle.path).session.prefill([ids])[0]  # fresh: every slot zero
    np.testing.assert_allclose(logits[0], base, atol=1e-5)
    assert np.abs(logits[1] - logits[0]).max() > 1e-2
    # Decode steps route rows too: the same token and history under two slots differ.
    step = session.decode([5, 5], [len(ids), len(ids)], lora_index=np.array([0, 0])).copy()
    mixed = session.decode([5, 5], [len(ids), len(ids)], lora_index=np.array([0, 1]))
    np.testing.assert_allclose(mixed[0], step[0], atol=1e-6)
    assert np.abs(mixed[1] - step[1]).max() > 1e-2
