"""SFT: answer-only labels, LoRA and full training lower the loss, determinism, adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tinyllm
from tinyllm.api import add_tasks
from tinyllm.distill.kd import KDConfig, kd_loss_fn
from tinyllm.distill.losses import IGNORE_INDEX
from tinyllm.distill.sft import (
    Encoded,
    TrainConfig,
    answer_logits,
    collate,
    encode,
    prompt_text,
    sft_loss,
    train_full,
    train_lora,
)
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


def test_rows_and_batches_without_answer_tokens(tiny_model: Any, color_task: TaskSpec) -> None:
    """An answer truncated away (all labels IGNORE_INDEX) must not shift the other rows'
    positions, and a batch with no answer token at all gives an empty result and a loss
    of 0 that backward runs through (not NaN, not an error)."""
    model = tiny_model.model
    answered = Encoded([5, 6, 7, 8, 9], [IGNORE_INDEX] * 3 + [8, 9])
    cut = Encoded([5, 6, 7], [IGNORE_INDEX] * 3)
    alone, _ = answer_logits(model, collate([answered], 0))  # [1, 2, V]
    logits, targets = answer_logits(model, collate([answered, cut], 0))  # [2, 2, V], [2, 2]
    assert targets.tolist() == [[8, 9], [IGNORE_INDEX] * 2]
    assert torch.allclose(logits[0], alone[0], atol=1e-5)
    mixed = sft_loss(model, collate([answered, cut], 0)).item()
    assert mixed == pytest.approx(sft_loss(model, collate([answered], 0)).item(), rel=1e-5)

    empty = collate([cut, cut], 0)
    logits, targets = answer_logits(model, empty)
    assert logits.shape == (2, 0, model.config.vocab_size) and targets.shape == (2, 0)
    kd = kd_loss_fn(model, tiny_model.tokenizer, color_task, KDConfig(ce_weight=1.0), seed=0)
    for loss in (sft_loss(model, empty), kd(model, empty)):
        assert loss.item() == 0.0
        loss.backward()  # on the graph: the training step runs, with zero gradients
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
