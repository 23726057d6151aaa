"""Logit knowledge-distillation losses: ``(student_logits, teacher_logits, labels) -> loss``.

One component shared by distillation (logit KD, GKD) and pruning healing; the recipes
that call it own their loops. Divergences are per token over the vocabulary and averaged
over the tokens whose label is not ``ignore_index`` (prompt and padding are masked):

- ``forward``: KL(p_teacher || p_student), mean-seeking (classic Hinton KD);
- ``reverse``: KL(p_student || p_teacher), mode-seeking;
- ``jsd``: generalized Jensen-Shannon with weight ``beta`` (GKD): with the mixture
  ``m = beta * p_teacher + (1 - beta) * p_student``,
  ``beta * KL(p_teacher || m) + (1 - beta) * KL(p_student || m)``. ``beta = 0.5`` is the
  symmetric JSD; it approaches forward KL's shape as ``beta -> 0`` (up to scale).

With ``temperature`` T the logits are divided by T and the loss multiplied by T^2 so its
gradient scale does not depend on T.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from tinyllm.errors import ConfigError, missing_dependency
from tinyllm.torchkit import IGNORE_INDEX

if TYPE_CHECKING:
    import torch

Divergence = Literal["forward", "reverse", "jsd"]
DIVERGENCES: tuple[Divergence, ...] = ("forward", "reverse", "jsd")


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise missing_dependency("torch", "train", "knowledge distillation") from e
    return torch


def token_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    divergence: Divergence = "forward",
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-token divergence. logits: [..., V] (same shape) -> [...], in nats, times T^2."""
    torch = _torch()
    if divergence not in DIVERGENCES:
        raise ConfigError(f"unknown divergence {divergence!r}; use one of {DIVERGENCES}")
    if not 0.0 < beta < 1.0 and divergence == "jsd":
        raise ConfigError(f"jsd beta must be in (0, 1), got {beta}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ; logit KD needs the same tokenizer "
            "(use sequence-level KD otherwise)"
        )
    s = torch.log_softmax(student_logits.float() / temperature, dim=-1)  # [..., V]
    t = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)  # [..., V]
    if divergence == "forward":
        per_token = (t.exp() * (t - s)).sum(-1)
    elif divergence == "reverse":
        per_token = (s.exp() * (s - t)).sum(-1)
    else:
        log_m = torch.logsumexp(
            torch.stack([t + math.log(beta), s + math.log(1.0 - beta)]), dim=0
        )  # [..., V]
        kl_t = (t.exp() * (t - log_m)).sum(-1)
        kl_s = (s.exp() * (s - log_m)).sum(-1)
        per_token = beta * kl_t + (1.0 - beta) * kl_s
    return per_token * temperature**2


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    divergence: Divergence = "forward",
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Mean divergence over unmasked tokens.

    Args:
        student_logits: [B, T, V] logits of the student at each position.
        teacher_logits: [B, T, V] logits of the teacher at the same positions.
        labels: [B, T] target ids aligned with the logits (already shifted, as the
            logits predict them); positions equal to ``ignore_index`` are masked.
            None: every position counts.
    """
    per_token = token_divergence(student_logits, teacher_logits, divergence, beta, temperature)
    if labels is None:
        return per_token.mean()
    mask = (labels != ignore_index).to(per_token.dtype)  # [B, T]
    # no unmasked token: 0, still on the logits' graph (a loss backward can run through)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)
