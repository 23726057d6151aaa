"""Healing: the KD loss goes down, runs are deterministic, the teacher is restricted to
the kept tokens, bad settings are errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from tinyllm.compress.heal import HealConfig, heal
from tinyllm.compress.importance import collect_importance
from tinyllm.compress.prune import PrunePlan, apply_selection, select
from tinyllm.distill.losses import kd_loss
from tinyllm.errors import ConfigError
from tinyllm.models import build_model, build_reference, bundle_state_dict

KEPT = np.arange(48)  # the first 48 tokens of 64
RNG = np.random.default_rng(0)
DATA = [RNG.integers(0, 48, size=int(n)).tolist() for n in RNG.integers(6, 14, size=16)]


def pruned_pair(small_config: Any, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    config = small_config()
    teacher = build_model(config, seed=seed)
    with torch.no_grad():  # peaked next-token distributions, so there is something to learn
        teacher.model.embed_tokens.weight.mul_(30)
    plan = PrunePlan(0.5, 48, 16, 2, 2, [0, 2], config.num_parameters(), 0)
    sel = select(config, plan, collect_importance(teacher, DATA[:4]), KEPT)
    weights = {k: v.numpy() for k, v in bundle_state_dict(teacher, config).items()}
    student = build_reference(plan.config(config), apply_selection(weights, config, sel))
    return student, teacher


def held_out_loss(student: torch.nn.Module, teacher: torch.nn.Module) -> float:
    """Mean KD loss over all of DATA (student and teacher ids coincide: KEPT = 0..47)."""
    total = 0.0
    with torch.no_grad():
        for seq in DATA:
            ids = torch.tensor([seq])
            t = teacher(input_ids=ids).logits[..., :48]
            total += float(kd_loss(student(input_ids=ids).logits, t))
    return total / len(DATA)


def test_healing_lowers_the_kd_loss_deterministically(small_config: Any) -> None:
    cfg = HealConfig(steps=30, batch_size=4, lr=3e-3, seed=1)
    student, teacher = pruned_pair(small_config)
    before = held_out_loss(student, teacher)
    report = heal(student, teacher, DATA, kd_loss, kept_tokens=KEPT, config=cfg, progress=False)
    assert len(report.losses) == 30
    assert held_out_loss(student, teacher) < 0.5 * before
    again, teacher2 = pruned_pair(small_config)
    repeat = heal(again, teacher2, DATA, kd_loss, kept_tokens=KEPT, config=cfg, progress=False)
    assert repeat.losses == report.losses


def test_teacher_logits_are_restricted_to_the_kept_tokens(small_config: Any) -> None:
    student, teacher = pruned_pair(small_config)
    seen: list[tuple[int, ...]] = []

    def loss_fn(s: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(s.shape), tuple(t.shape)))
        with torch.no_grad():
            full = teacher(input_ids=torch.zeros(1, 1, dtype=torch.long)).logits
        assert full.shape[-1] == 64
        assert (labels[labels != -100] < 48).all()
        return kd_loss(s, t, labels)

    heal(
        student,
        teacher,
        DATA,
        loss_fn,
        kept_tokens=KEPT,
        config=HealConfig(steps=2),
        progress=False,
    )
    assert all(s == t and s[-1] == 48 for s, t in seen)


def test_sequences_with_dropped_tokens_are_skipped_and_bad_settings_are_errors(
    small_config: Any,
) -> None:
    student, teacher = pruned_pair(small_config)
    outside = [[1, 60, 2, 3]]  # token 60 was dropped
    with pytest.raises(ConfigError, match="healing set is empty"):
        heal(student, teacher, outside, kd_loss, kept_tokens=KEPT, progress=False)
    with pytest.raises(ConfigError, match="steps"):
        heal(student, teacher, DATA, kd_loss, config=HealConfig(lr=0), progress=False)
