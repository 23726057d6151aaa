"""SFT: answer-only labels, LoRA and full training lower the loss, determinism, adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tinyllm
from tinyllm.api import add_tasks
from tinyllm.distill.losses import IGNORE_INDEX
from tinyllm.distill.sft import TrainConfig, encode, prompt_text, train_full, train_lora
from tinyllm.errors import ConfigError, TaskError
from tinyllm.models import adapter_applied
from tinyllm.tasks import TaskSpec

FAST = TrainConfig(steps=30, batch_size=8, lr=5e-3, warmup=1, rank=4, alpha=8, max_len=64)


def test_encode_masks_the_prompt_and_ends_with_eos(
    examples: Any, tiny_model: Any, color_task: TaskSpec
) -> None:
    tok = tiny_model.tokenizer
    [enc] = encode(tok, color_task, examples(1, offset=1), max_len=256)
    answer = [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]
    assert tok.decode(answer) == "green" + tok.eos_token
    n_prompt = len(enc.labels) - len(answer)
    prompt = tok.decode(enc.input_ids[:n_prompt])
    assert prompt == prompt_text(tok, color_task, "item 1 is green")
    assert "Colour: item 1 is green" in prompt
    assert all(lab == IGNORE_INDEX for lab in enc.labels[:n_prompt])


def test_lora_training_lowers_the_loss_and_leaves_the_base(
    examples: Any, tiny_model: Any, color_task: TaskSpec
) -> None:
    before = {k: v.clone() for k, v in tiny_model.model.state_dict().items()}
    adapter, result = train_lora(
        tiny_model.model, tiny_model.tokenizer, color_task, examples(64), FAST
    )
    assert result.last < 0.8 * result.first, result.losses
    adapter.check(tiny_model.config, "trained adapter")
    assert adapter.rank == 4 and adapter.scaling == 2.0
    assert any(np.abs(v).max() > 0 for k, v in adapter.tensors.items() if "lora_B" in k)
    after = tiny_model.model.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_same_seed_same_losses(
    examples: Any, tiny_llama_bundle: Path, color_task: TaskSpec
) -> None:
    config = TrainConfig(steps=4, batch_size=4, lr=5e-3, warmup=1, rank=2, max_len=64)
    runs = []
    for _ in range(2):
        loaded = tinyllm.load_torch_model(tiny_llama_bundle)
        _, result = train_lora(loaded.model, loaded.tokenizer, color_task, examples(16), config)
        runs.append(result.losses)
    assert runs[0] == runs[1]
    other = TrainConfig(steps=4, batch_size=4, lr=5e-3, warmup=1, rank=2, max_len=64, seed=1)
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    _, result = train_lora(loaded.model, loaded.tokenizer, color_task, examples(16), other)
    assert result.losses != runs[0]


def test_full_fine_tuning_lowers_the_loss(
    examples: Any, tiny_model: Any, color_task: TaskSpec
) -> None:
    config = TrainConfig(steps=20, batch_size=8, lr=2e-3, warmup=1, lora=False, max_len=64)
    result = train_full(tiny_model.model, tiny_model.tokenizer, color_task, examples(64), config)
    assert result.last < 0.8 * result.first, result.losses


def test_adapter_goes_into_a_bundle_and_changes_the_model_only_inside_the_block(
    examples: Any, tiny_model: Any, tiny_llama_bundle: Path, color_task: TaskSpec, tmp_path: Path
) -> None:
    adapter, _ = train_lora(tiny_model.model, tiny_model.tokenizer, color_task, examples(32), FAST)
    child = add_tasks(tiny_llama_bundle, tmp_path / "child.tllm", [color_task], {"color": adapter})
    stored = child.adapter("color")
    assert stored.rank == adapter.rank
    ids = torch.tensor([[1, 2, 3, 4]])
    model = tiny_model.model
    with torch.no_grad():
        base = model(ids).logits
        with adapter_applied(model, stored):
            adapted = model(ids).logits
        restored = model(ids).logits
    assert not torch.allclose(base, adapted, atol=1e-4)
    assert torch.equal(base, restored)


def test_bad_training_inputs(tiny_model: Any, color_task: TaskSpec) -> None:
    with pytest.raises(TaskError, match="no training examples"):
        train_lora(tiny_model.model, tiny_model.tokenizer, color_task, [], FAST)
    with pytest.raises(ConfigError, match="LoRA targets"):
        TrainConfig(targets=("qkv",))
    with pytest.raises(ConfigError, match="steps"):
        TrainConfig(steps=0)
