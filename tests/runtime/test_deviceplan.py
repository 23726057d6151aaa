"""The device-buffer plan: residence, shapes, bytes and copies per decode step."""

from __future__ import annotations

import dataclasses

import pytest

from tinyllm.errors import ConfigError
from tinyllm.presets import PRESETS
from tinyllm.runtime.deviceplan import names, plan
from tinyllm.runtime.engineinfo import EngineInfo

CONFIG = PRESETS["tiny-llama"].config  # the dimensions the tests' tiny models have
assert CONFIG is not None
CUDA_FP16 = EngineInfo("onnx-cuda", "ort", "fp16", "float16", 256, "model.onnx")
LORA = EngineInfo(
    "onnx-cuda",
    "ort",
    "fp16",
    "float16",
    256,
    "model.onnx",
    lora_slots=5,
    lora_rank=4,
    lora_targets=("q_proj", "down_proj"),
)


def test_cuda_ort_keeps_kv_adapters_and_logits_on_the_device() -> None:
    p = plan(LORA, CONFIG, max_batch=8, max_seq=128, device="cuda")
    assert p.resident("host") == []
    assert p.resident("device") == [
        "kv.key.0",
        "kv.value.0",
        "kv.key.1",
        "kv.value.1",
        "lora_A.q_proj",
        "lora_B.q_proj",
        "lora_A.down_proj",
        "lora_B.down_proj",
        "logits",
    ]
    shapes = {b.name: b.shape for b in p.buffers}
    assert shapes["kv.key.0"] == (8, 2, 128, 32)
    assert shapes["lora_A.q_proj"] == (2, 5, 128, 4)
    assert shapes["lora_B.down_proj"] == (2, 5, 4, 128)
    assert shapes["logits"] == (8, 512)
    kv = 4 * 8 * 2 * 128 * 32 * 2  # 4 buffers, fp16
    lora = 2 * 5 * 4 * (128 + 128 + 256 + 128) * 2  # A and B of q_proj and down_proj
    assert p.bytes_on("device") == kv + lora + 8 * 512 * 2
    # Per decode step: four small inputs up, the logits down; adapters go up once.
    assert names(p.decode_copies) == [
        "input_ids",
        "logits_index",
        "seqlens_k",
        "lora_index",
        "logits",
    ]
    assert (p.copies_per_step("h2d"), p.copies_per_step("d2h")) == (4, 1)
    assert p.bytes_per_step("h2d") == 8 * 8 + 8 * 8 + 8 * 4 + 8 * 8
    assert p.bytes_per_step("d2h") == 8 * 512 * 2
    assert names(p.setup_copies) == [b for b in p.resident("device") if b.startswith("lora")]


def test_cpu_plan_has_no_copies() -> None:
    p = plan(CUDA_FP16, CONFIG, max_batch=2, max_seq=64, device="cpu")
    assert p.resident("device") == [] and p.decode_copies == [] and p.setup_copies == []
    assert p.resident("host") == ["kv.key.0", "kv.value.0", "kv.key.1", "kv.value.1", "logits"]
    assert p.bytes_on("host") == 4 * 2 * 2 * 64 * 32 * 2 + 2 * 512 * 2


def test_standard_flavour_on_cuda_copies_the_kv_every_step() -> None:
    info = EngineInfo("onnx-standard", "standard", "fp32", "float32", 256, "model.onnx")
    p = plan(info, CONFIG, max_batch=1, max_seq=100, device="cuda")
    assert p.resident("device") == []
    assert p.copies_per_step("h2d") == 4 + 4  # ids, logits_index, positions, mask + 4 past
    assert p.copies_per_step("d2h") == 4 + 1  # 4 present + logits
    past = next(c for c in p.decode_copies if c.name == "past.kv.key.0")
    assert past.shape == (1, 2, 99, 32)
    mask = next(c for c in p.decode_copies if c.name == "attention_mask")
    assert mask.shape == (1, 100)
    assert "onnx-cuda" in p.notes[0]


def test_greedy_ids_engine_brings_back_ids_alone_in_a_greedy_step() -> None:
    """An engine with greedy ids: a logits step brings back the logits and the ids; a
    greedy step only the ids (8 bytes a row instead of the vocabulary's logits)."""
    info = dataclasses.replace(CUDA_FP16, greedy_ids=True)
    full = plan(info, CONFIG, max_batch=8, max_seq=128, device="cuda")
    greedy = plan(info, CONFIG, max_batch=8, max_seq=128, device="cuda", greedy=True)
    assert full.resident("device")[-2:] == ["logits", "greedy_ids"]
    assert names(full.decode_copies)[-2:] == ["logits", "greedy_ids"]
    assert full.bytes_per_step("d2h") == 8 * 512 * 2 + 8 * 8
    assert names(greedy.decode_copies) == ["input_ids", "logits_index", "seqlens_k", "greedy_ids"]
    assert greedy.bytes_per_step("d2h") == 8 * 8
    assert greedy.bytes_per_step("h2d") == full.bytes_per_step("h2d")
    assert greedy.resident("device") == full.resident("device")  # the logits stay there
    with pytest.raises(ConfigError, match="greedy_ids output: this engine has none"):
        plan(CUDA_FP16, CONFIG, max_batch=8, max_seq=128, device="cuda", greedy=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "tpu"}, "device must be one of cpu, cuda"),
        ({"max_batch": 0}, "max_batch must be >= 1"),
        ({"max_seq": 0}, "max_seq must be 1 to the engine's context of 256"),
        ({"max_seq": 257}, "max_seq must be 1 to the engine's context of 256"),
    ],
)
def test_bad_plans_are_config_errors(kwargs: dict, message: str) -> None:
    args = {"max_batch": 1, "max_seq": 16, "device": "cuda", **kwargs}
    with pytest.raises(ConfigError, match=message):
        plan(CUDA_FP16, CONFIG, **args)
