"""Logit knowledge distillation (GKD-style) into a per-task LoRA, or sequence KD.

When the teacher is a local model with the student's tokenizer, the student learns the
teacher's whole next-token distribution on the answer positions with
:func:`tinyllm.distill.losses.kd_loss` (forward KL, reverse KL or generalized JSD). With
``on_policy`` = λ, a share λ of batches replaces the reference answers by the student's
own samples, which the teacher then scores (GKD, Agarwal et al. 2024): the student is
corrected where it actually goes. Otherwise (an API or pipeline teacher, or a different
tokenizer) there are no comparable logits, and distillation is sequence-level: SFT on the
teacher's outputs (:mod:`tinyllm.distill.sft`), chosen by :func:`load_teacher_model` with
a message saying why.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinyllm.distill.calltargets import sampled_calls
from tinyllm.distill.losses import DIVERGENCES, IGNORE_INDEX, Divergence, kd_loss
from tinyllm.distill.sft import (
    Batch,
    Encoded,
    TrainConfig,
    TrainResult,
    answer_ce,
    answer_logits,
    collate,
    prompt_ids,
    train_lora,
)
from tinyllm.errors import ConfigError
from tinyllm.tasks import Example, TaskSpec

if TYPE_CHECKING:
    import torch

    from tinyllm.adapters import LoraAdapter


@dataclass(frozen=True)
class KDConfig:
    """Logit-KD settings: divergence (forward|reverse|jsd), JSD beta, softmax temperature,
    the on-policy share of batches, and the weight of the plain CE term on references."""

    divergence: Divergence = "forward"
    beta: float = 0.5
    temperature: float = 1.0
    on_policy: float = 0.0
    ce_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.divergence not in DIVERGENCES:
            raise ConfigError(f"unknown divergence {self.divergence!r}; use one of {DIVERGENCES}")
        if not 0.0 <= self.on_policy <= 1.0 or self.ce_weight < 0:
            raise ConfigError("on_policy must be in [0, 1] and ce_weight >= 0")


def check_same_tokenizer(student: Any, teacher: Any) -> None:
    """Raise ConfigError unless both tokenizers map the same strings to the same ids."""
    if student.get_vocab() != teacher.get_vocab():
        raise ConfigError(
            f"logit KD needs the student's tokenizer, but the teacher's vocabulary differs "
            f"({len(teacher.get_vocab())} vs {len(student.get_vocab())} tokens); use "
            "method='sft' (sequence-level KD on the teacher's outputs)"
        )


def load_teacher_model(spec: str, student_tokenizer: Any, log: Callable[[str], None]) -> Any:
    """The teacher as a local torch model for logit KD, or None for sequence-level KD.

    ``bundle:PATH`` (or a bundle folder) and ``hf:PATH`` are local models; a different
    tokenizer or any other teacher kind falls back to sequence KD, with a message.
    """
    from tinyllm.bundle import Bundle
    from tinyllm.models import load_hf_folder, load_model

    kind, _, rest = spec.partition(":")
    if kind == "bundle" or (not rest and Path(spec).is_dir()):
        loaded = load_model(Bundle.open(rest or spec))
    elif kind == "hf":
        loaded = load_hf_folder(Path(rest), "float32")
    else:
        log(f"teacher {spec!r} gives no logits: sequence-level KD (SFT on its outputs)")
        return None
    try:
        check_same_tokenizer(student_tokenizer, loaded.tokenizer)
    except ConfigError as e:
        log(f"{e}; falling back to sequence-level KD")
        return None
    log(f"teacher {spec!r} shares the student's tokenizer: logit KD")
    return loaded.model


def on_policy_batch(
    model: Any, tokenizer: Any, batch: Batch, max_new_tokens: int, task: TaskSpec | None = None
) -> Batch:
    """The batch's prompts with the student's own sampled answers (at most
    ``max_new_tokens``) in place of the references; for a ``task`` with tools, its own
    calls instead (:func:`tinyllm.distill.calltargets.sampled_calls`, with the task's call
    and answer lengths)."""
    from tinyllm.torchkit import sample_continuations

    prompts = prompt_ids(batch)
    if task is not None and task.tools is not None:
        items = sampled_calls(model, tokenizer, task, prompts)
    else:
        answers = sample_continuations(model, tokenizer, prompts, max_new_tokens, temperature=1.0)
        items = [
            Encoded(p + answer, [IGNORE_INDEX] * len(p) + answer)
            for p, answer in zip(prompts, answers, strict=True)
        ]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return collate(items, pad, batch.task)


class OnPolicySteps:
    """Which training steps run on the student's own samples (``KDConfig.on_policy``).

    Step ``s`` (0-based) does when the ``s``-th draw of ``random.Random(seed)`` is below
    the share, so our loop and trl (:mod:`tinyllm.distill.trlbackend`) pick the same steps
    for a seed, and a resumed trl run the steps of an uninterrupted one.
    """

    def __init__(self, share: float, seed: int) -> None:
        self.share = share
        self.rng = random.Random(seed)
        self.draws: list[float] = []

    def __call__(self, step: int) -> bool:
        """Whether step ``step`` trains on the student's samples."""
        if not self.share:
            return False
        while len(self.draws) <= step:
            self.draws.append(self.rng.random())
        return self.draws[step] < self.share


def kd_loss_fn(
    teacher: Any, tokenizer: Any, task: TaskSpec, config: KDConfig, seed: int
) -> Callable[[Any, Batch], torch.Tensor]:
    """``(student, batch) -> loss``: KD against the teacher on the answer positions (one
    call per step: the calls count the steps for :class:`OnPolicySteps`)."""
    import torch

    on_policy, steps = OnPolicySteps(config.on_policy, seed), itertools.count()

    def loss(model: Any, batch: Batch) -> Any:
        if on_policy(next(steps)):
            batch = on_policy_batch(model, tokenizer, batch, task.output.max_new_tokens, task)
        s_logits, targets = answer_logits(model, batch)  # [B, K, V], [B, K]
        with torch.no_grad():
            t_logits, _ = answer_logits(teacher, batch)  # [B, K, V']
        vocab = min(s_logits.shape[-1], t_logits.shape[-1])  # padded embedding rows differ
        value = kd_loss(
            s_logits[..., :vocab],
            t_logits[..., :vocab],
            targets,
            config.divergence,
            config.beta,
            config.temperature,
        )
        if config.ce_weight:
            value = value + config.ce_weight * answer_ce(s_logits, targets)
        return value

    return loss


def train_kd_lora(
    model: Any,
    teacher: Any,
    tokenizer: Any,
    task: TaskSpec,
    examples: Sequence[Example],
    config: TrainConfig,
    kd: KDConfig,
    progress: bool = False,
) -> tuple[LoraAdapter, TrainResult]:
    """Train one task's LoRA by logit KD from ``teacher`` (same tokenizer; frozen).

    Returns the adapter and the KD loss curve; the student is returned to its base state.
    """
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    loss = kd_loss_fn(teacher, tokenizer, task, kd, config.seed)
    return train_lora(model, tokenizer, task, examples, config, progress, loss_fn=loss, method="kd")
