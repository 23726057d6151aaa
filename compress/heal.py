"""Healing: logit distillation from the unpruned parent into the pruned model.

A KD loss on random batches of the healing sequences, trained by the shared loop
(:func:`tinyllm.torchkit.train_loop`, AdamW on every weight of the pruned model).

The loss is passed in (``loss_fn(student_logits, teacher_logits, labels) -> loss``), so
compress never imports distill: :mod:`tinyllm.facade.compress` passes
``tinyllm.distill.losses.kd_loss``. With a trimmed vocabulary the teacher's logits are
restricted to the kept token ids, so both distributions live on the same vocabulary.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyllm.compress.pruneoptions import HealConfig
from tinyllm.errors import ConfigError
from tinyllm.torchkit import IGNORE_INDEX, LoopSettings, train_loop

LossFn = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class HealReport:
    """Loss per step, and the first and last few averaged."""

    losses: list[float]

    @property
    def first(self) -> float:
        """Mean loss over the first (up to) 5 steps."""
        return float(np.mean(self.losses[:5])) if self.losses else float("nan")

    @property
    def last(self) -> float:
        """Mean loss over the last (up to) 5 steps."""
        return float(np.mean(self.losses[-5:])) if self.losses else float("nan")


def _batch(sequences: Sequence[Sequence[int]], pad: int) -> tuple[Any, Any]:
    """Right-padded ids [B, T] and mask [B, T]."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def heal(
    student: Any,
    teacher: Any,
    sequences: Sequence[Sequence[int]],
    loss_fn: LossFn,
    *,
    kept_tokens: np.ndarray | None = None,
    config: HealConfig | None = None,
    progress: bool = True,
) -> HealReport:
    """Train ``student`` to match ``teacher``'s next-token distributions on ``sequences``.

    Args:
        student: the pruned transformers model (trained in place, left in eval mode).
        teacher: the parent model (frozen).
        sequences: token id lists in the teacher's vocabulary.
        loss_fn: ``(student_logits [B,T,V'], teacher_logits [B,T,V'], labels [B,T]) -> loss``,
            labels masked with -100 at padding.
        kept_tokens: [V'] teacher ids the student keeps (ascending); None: same vocabulary.
            Sequences using a dropped token are skipped.
        config: steps, batch size, learning rate, seed.
        progress: show a progress bar.
    """
    import torch

    cfg = config or HealConfig()
    if cfg.steps < 0 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise ConfigError("healing needs steps >= 0, batch_size >= 1 and lr > 0")
    to_student = _student_ids(int(teacher.config.vocab_size), kept_tokens)
    data = [list(s) for s in sequences if len(s) > 1 and (to_student[list(s)] >= 0).all()]
    if cfg.steps and not data:
        raise ConfigError("no healing sequence uses only kept tokens; the healing set is empty")
    keep = None if kept_tokens is None else torch.as_tensor(kept_tokens, dtype=torch.long)
    teacher.eval()

    def drawn(rng: random.Random) -> Iterator[list[list[int]]]:
        while True:  # batch_size sequences drawn with replacement per step
            yield [data[rng.randrange(len(data))] for _ in range(cfg.batch_size)]

    def loss(model: Any, chosen: list[list[int]]) -> Any:
        return _kd_step_loss(model, teacher, chosen, to_student, keep, loss_fn)

    settings = LoopSettings(
        steps=cfg.steps,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        grad_clip=cfg.max_grad_norm,
        seed=cfg.seed,
    )
    result = train_loop(
        student,
        drawn(random.Random(cfg.seed)),
        loss,
        settings,
        progress="heal" if progress else None,
    )
    return HealReport(result.losses)


def _student_ids(teacher_vocab: int, kept_tokens: np.ndarray | None) -> np.ndarray:
    """[V] teacher id -> student id (-1: dropped)."""
    if kept_tokens is None:
        return np.arange(teacher_vocab)
    to_student = np.full(teacher_vocab, -1)
    to_student[kept_tokens] = np.arange(len(kept_tokens))
    return to_student


def _kd_step_loss(
    student: Any,
    teacher: Any,
    chosen: list[list[int]],
    to_student: np.ndarray,
    keep: Any,
    loss_fn: LossFn,
) -> Any:
    """The KD loss of one batch: the teacher's logits restricted to the kept tokens."""
    import torch

    ids, mask = _batch(chosen, 0)  # [B, T] teacher ids
    student_ids = torch.as_tensor(to_student)[ids] * mask  # [B, T] (pad -> 0)
    with torch.no_grad():
        hidden = teacher.model(input_ids=ids, attention_mask=mask, use_cache=False)[0]
        head = teacher.lm_head.weight if keep is None else teacher.lm_head.weight[keep]
        t_logits = torch.nn.functional.linear(hidden, head)  # [B, T, V'] kept rows only
    s_logits = student(input_ids=student_ids, attention_mask=mask, use_cache=False).logits
    labels = student_ids[:, 1:].masked_fill(mask[:, 1:] == 0, IGNORE_INDEX)  # [B, T-1]
    return loss_fn(s_logits[:, :-1], t_logits[:, :-1], labels)
