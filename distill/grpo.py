"""GRPO with verifier rewards into a per-task LoRA (a compact loop, no trl).

For each prompt the policy samples a group of G answers; each answer's reward is
``verifier_weight * verify(task, answer).ok + (1 - verifier_weight) * metric(answer,
reference)`` (just the verifier when the reference is unknown). Advantages are the
rewards normalised within the group, ``(r - mean) / (std + eps)``, and the loss is
``-mean_i A_i * mean_t log pi(a_i,t)``: GRPO with one policy update per sampled group
(trl's default ``num_iterations=1``, where the clipped ratio is exactly 1) and no KL
term (trl's default ``beta=0``). For a task with tools the samples are calls, and the
reward is earned by the executed result (:func:`call_reward`), or, when the result goes in
the model's context, by the answer the policy writes after it (:func:`verifier_reward`).
Our loop shares :func:`tinyllm.distill.sft.train`, so seeds, LoRA and adapters work as
for SFT.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tinyllm.distill.calltargets import answer_after_result, sampled_calls
from tinyllm.distill.losses import IGNORE_INDEX
from tinyllm.distill.sft import (
    Batch,
    Encoded,
    TrainConfig,
    TrainResult,
    answer_logits,
    collate,
    prompt_ids,
    train_lora,
)
from tinyllm.errors import ConfigError
from tinyllm.tasks import Example, TaskSpec

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter

Reward = Callable[[str, str], float]  # (completion, reference) -> reward


@dataclass(frozen=True)
class GRPOConfig:
    """Group size G, sampling temperature, reward mix and answer length (None: the task's,
    or its ``tools.max_call_tokens``); ``sft_steps`` supervised steps on the targets first,
    on the same LoRA (a student that writes no valid call yet earns no reward to learn
    from)."""

    group_size: int = 4
    temperature: float = 1.0
    verifier_weight: float = 0.5
    max_new_tokens: int | None = None
    sft_steps: int = 0

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ConfigError("GRPO needs group_size >= 2 (advantages compare samples)")
        if self.sft_steps < 0:
            raise ConfigError(f"sft_steps must be >= 0, got {self.sft_steps}")
        if self.temperature <= 0 or not 0.0 <= self.verifier_weight <= 1.0:
            raise ConfigError("temperature must be > 0 and verifier_weight in [0, 1]")


def verifier_reward(task: TaskSpec, weight: float = 0.5) -> Reward:
    """Reward of one completion: verifier pass/fail mixed with the task metric vs reference."""
    from tinyllm.metrics import score
    from tinyllm.verifiers import answer_text, verify

    def reward(completion: str, reference: str) -> float:
        answer = answer_text(task, completion)
        ok = 1.0 if verify(task, answer).ok else 0.0
        if not reference:
            return ok
        return weight * ok + (1.0 - weight) * score(task.metric, [answer], [reference])

    return reward


def call_reward(task: TaskSpec, weight: float = 0.5) -> Reward:
    """Reward of one sampled tool call (a task with ``tools.result: answer``): the call is
    executed with the task's tools, as the engine does, and its result is scored as the
    answer, the verifier mixed with the metric against the result of the reference call.
    A call that does not parse, names another tool, breaks the schema or fails earns 0."""
    from tinyllm.metrics import score
    from tinyllm.toolcalling import execute_call
    from tinyllm.verifiers import answer_text, verify

    if task.tools is None or task.tools.result != "answer":
        raise ConfigError(
            f"task {task.name!r}: the call's result is the reward only for tools.result "
            "'answer'; for 'context' the answer written after it is rewarded "
            "(verifier_reward, which train_grpo_lora uses for such a task)"
        )
    wanted: dict[str, str] = {}  # reference call -> its answer (each is run once)

    def reward(completion: str, reference: str) -> float:
        call = execute_call(task, completion)
        if call.result is None:
            return 0.0
        answer = answer_text(task, call.result)
        ok = 1.0 if verify(task, answer).ok else 0.0
        if reference and reference not in wanted:
            wanted[reference] = answer_text(task, execute_call(task, reference).result or "")
        want = wanted.get(reference, "")
        if not want:
            return ok
        return weight * ok + (1.0 - weight) * score(task.metric, [answer], [want])

    return reward


@dataclass
class RewardLog:
    """Mean reward of each step's samples."""

    means: list[float] = field(default_factory=list)


def group_advantages(rewards: Any, group_size: int) -> Any:
    """Rewards [B*G] -> advantages [B*G], normalised within each group of G."""
    grouped = rewards.view(-1, group_size)  # [B, G]
    mean, std = grouped.mean(dim=1, keepdim=True), grouped.std(dim=1, keepdim=True)
    return ((grouped - mean) / (std + 1e-4)).view(-1)


def grpo_loss_fn(
    tokenizer: Any,
    config: GRPOConfig,
    reward: Reward,
    max_new_tokens: int,
    log: RewardLog,
    task: TaskSpec | None = None,
) -> Callable[[Any, Batch], Any]:
    """``(policy, batch) -> loss``: sample groups, score them, policy-gradient step.

    For a ``task`` whose tool result goes in context, each sample is a call, its executed
    result (inserted, masked) and the answer sampled after it
    (:func:`tinyllm.distill.calltargets.sampled_calls`); ``reward`` scores that answer
    against the reference's (a call that fails earns 0), and the step trains the call and
    the answer.
    """
    import torch

    in_context = task is not None and task.tools is not None and task.tools.result == "context"
    tool_task = task if in_context else None  # its samples are call, result, answer

    def text(ids: Any) -> str:
        return str(tokenizer.decode(ids, skip_special_tokens=True))

    def loss(model: Any, batch: Batch) -> Any:
        g = config.group_size
        group = [p for p in prompt_ids(batch) for _ in range(g)]
        texts: list[str | None]
        if tool_task is not None:
            items = sampled_calls(
                model, tokenizer, tool_task, group, config.temperature, max_new_tokens
            )
            refs = [text(answer_after_result(labels.tolist()) or []) for labels in batch.labels]
            answers = [answer_after_result(item.labels) for item in items]
            texts = [None if a is None else text(a) for a in answers]  # None: the call failed
        else:
            refs = [text(labels[labels != IGNORE_INDEX]) for labels in batch.labels]
            samples = sample(model, tokenizer, group, config, max_new_tokens)
            texts = [text(s) for s in samples]
            items = [
                Encoded(p + s, [IGNORE_INDEX] * len(p) + s)
                for p, s in zip(group, samples, strict=True)
            ]
        rewards = torch.tensor(
            [0.0 if t is None else reward(t, refs[i // g]) for i, t in enumerate(texts)],
            dtype=torch.float32,
        )  # [B*G]
        log.means.append(float(rewards.mean()))
        scored = collate(items, tokenizer.pad_token_id or 0, batch.task)
        logits, targets = answer_logits(model, scored)  # [B*G, K, V], [B*G, K]
        mask = targets != IGNORE_INDEX
        logp = (
            torch.log_softmax(logits.float(), dim=-1)
            .gather(-1, targets.clamp(min=0).unsqueeze(-1))
            .squeeze(-1)
        )  # [B*G, K]
        per_sample = (logp * mask).sum(1) / mask.sum(1).clamp(min=1)  # [B*G]
        return -(group_advantages(rewards, g) * per_sample).mean()

    return loss


def sample(
    model: Any, tokenizer: Any, prompts: list[list[int]], config: GRPOConfig, max_new_tokens: int
) -> list[list[int]]:
    """Sampled answer ids per prompt (up to and including eos; at least one token)."""
    from tinyllm.torchkit import sample_continuations

    return sample_continuations(model, tokenizer, prompts, max_new_tokens, config.temperature)


def train_grpo_lora(
    model: Any,
    tokenizer: Any,
    task: TaskSpec,
    examples: Sequence[Example],
    config: TrainConfig,
    grpo: GRPOConfig,
    progress: bool = False,
    reward: Reward | None = None,
    rewards: RewardLog | None = None,
) -> tuple[LoraAdapter, TrainResult]:
    """Train one task's LoRA with GRPO; ``reward`` defaults to :func:`verifier_reward`
    (:func:`call_reward` for a task with tools: ``examples`` are then call targets).

    ``rewards`` (if given) receives each step's mean reward. Returns the adapter and the
    GRPO steps' losses (after ``grpo.sft_steps`` supervised steps, if any).
    """
    if reward is None:
        executed = task.tools is not None and task.tools.result == "answer"
        make = call_reward if executed else verifier_reward
        reward = make(task, grpo.verifier_weight)
    budget = task.tools.max_call_tokens if task.tools else task.output.max_new_tokens
    loss = grpo_loss_fn(
        tokenizer,
        grpo,
        reward,
        grpo.max_new_tokens or budget,
        rewards if rewards is not None else RewardLog(),
        task,
    )
    return train_lora(
        model,
        tokenizer,
        task,
        examples,
        config,
        progress,
        loss_fn=loss,
        method="grpo",
        sft_first=grpo.sft_steps,
    )
