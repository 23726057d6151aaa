"""GRPO: verifier rewards on known strings; a few steps raise the mean reward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import tinyllm
from tinyllm.distill.grpo import (
    GRPOConfig,
    RewardLog,
    group_advantages,
    train_grpo_lora,
    verifier_reward,
)
from tinyllm.distill.sft import TrainConfig
from tinyllm.errors import ConfigError
from tinyllm.tasks import TaskSpec


def test_verifier_reward_mixes_validity_and_metric(color_task: TaskSpec) -> None:
    reward = verifier_reward(color_task, weight=0.5)
    assert reward("red", "red") == 1.0
    assert reward("blue", "red") == 0.5  # a valid label, wrong
    assert reward("purple", "red") == 0.0
    assert reward("green", "") == 1.0  # no reference: the verifier alone


def test_group_advantages_are_normalised_per_group() -> None:
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 5.0, 5.0]), 2)
    assert adv[:4].tolist() == pytest.approx([0.7071, -0.7071, -0.7071, 0.7071], abs=1e-3)
    assert adv[4:].tolist() == [0.0, 0.0]  # equal rewards: nothing to learn


def test_grpo_raises_the_mean_reward(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any
) -> None:
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    tok = loaded.tokenizer

    def reward(completion: str, reference: str) -> float:
        # Dense and learnable from a random start: the share of spaces and common letters.
        return sum(c in " etaoin" for c in completion) / max(1, len(completion))

    log = RewardLog()
    config = TrainConfig(steps=20, batch_size=2, lr=5e-2, warmup=1, rank=4, alpha=8, max_len=64)
    grpo = GRPOConfig(group_size=6, max_new_tokens=6)
    _, result = train_grpo_lora(
        loaded.model, tok, color_task, examples(16), config, grpo, reward=reward, rewards=log
    )
    assert len(result.losses) == 20 and len(log.means) == 20
    first, last = sum(log.means[:5]) / 5, sum(log.means[-5:]) / 5
    assert last > first + 0.08, log.means


def test_bad_grpo_config() -> None:
    with pytest.raises(ConfigError, match="group_size"):
        GRPOConfig(group_size=1)
