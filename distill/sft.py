"""Supervised fine-tuning on chat-formatted task examples, LoRA per task or full.

Each example becomes ``prompt + answer + eos``: the prompt is the task's conversation
(:func:`tinyllm.tasks.conversation`, no shots, exactly what evaluation and serving
send) rendered with the tokenizer's chat template; the loss is cross-entropy on the
answer tokens only. The loop is ours (:func:`tinyllm.torchkit.train_loop`, shared with
healing), not trl's SFTTrainer: on 2 CPU cores the whole budget is a few hundred steps,
and a short loop gives bit-identical losses for a seed, no accelerate/datasets machinery,
and one place where SFT, logit KD and the curriculum plug in their loss (``loss_fn``).
See docs/distill.md.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyllm.adapters import PROJECTIONS, LoraAdapter, from_peft_state_dict
from tinyllm.errors import ConfigError, TaskError, missing_dependency
from tinyllm.tasks import Example, TaskSpec, conversation
from tinyllm.torchkit import IGNORE_INDEX, LoopSettings, TrainResult, torch_module, train_loop

if TYPE_CHECKING:
    import torch

LossFn = Callable[[Any, "Batch"], "torch.Tensor"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (SFT, KD or the curriculum's stages)."""

    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 10
    weight_decay: float = 0.0
    max_len: int = 160
    seed: int = 0
    lora: bool = True
    rank: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")
    grad_clip: float = 1.0
    layers: int | None = None  # LoRA only on the last N layers (None: all)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.max_len < 8:
            raise ConfigError("steps and batch_size must be >= 1 and max_len >= 8")
        if self.lr <= 0 or self.rank < 1 or self.alpha < 1:
            raise ConfigError("lr, rank and alpha must be positive")
        bad = [t for t in self.targets if t not in PROJECTIONS]
        if self.layers is not None and self.layers < 1:
            raise ConfigError(
                f"layers must be >= 1 (the last N layers get LoRA), got {self.layers}"
            )
        if bad or not self.targets:
            raise ConfigError(f"LoRA targets must be a non-empty subset of {PROJECTIONS}")


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: ids [T] and labels [T] (IGNORE_INDEX on the prompt)."""

    input_ids: list[int]
    labels: list[int]


@dataclass
class Batch:
    """A right-padded batch: input_ids, attention_mask, labels, each [B, T]."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    task: str = ""


def prompt_text(tokenizer: Any, task: TaskSpec, text: str) -> str:
    """The chat-template prompt of one input, ending where the assistant's answer starts."""
    messages = conversation(task, text, shots=[])
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def encode(
    tokenizer: Any, task: TaskSpec, examples: Sequence[Example], max_len: int
) -> list[Encoded]:
    """Tokenize examples as prompt + answer + eos; prompt tokens masked (and the tool result
    of a ``tools.result: context`` target, which the runtime inserts); truncated to max_len."""
    if not examples:
        raise TaskError(f"task {task.name!r}: no training examples (the data is empty)")
    if tokenizer.eos_token is None:
        raise ConfigError("the student's tokenizer has no eos token; SFT needs one to stop")
    out = []
    for ex in examples:
        prompt = tokenizer(prompt_text(tokenizer, task, ex.input), add_special_tokens=False)
        ids = list(prompt["input_ids"])
        labels = [IGNORE_INDEX] * len(ids)
        for text, written in answer_spans(task, ex, tokenizer.eos_token):
            part = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            ids += part
            labels += part if written else [IGNORE_INDEX] * len(part)
        out.append(Encoded(ids[:max_len], labels[:max_len]))
    return out


def answer_spans(task: TaskSpec, example: Example, eos: str) -> list[tuple[str, bool]]:
    """The answer text of one example + eos, in spans tokenized one by one: ``[(text,
    trained)]``. A tool task's target with its result in context has three (the call, the
    result the runtime inserts, untrained, and the answer), tokenized apart as the runtime
    tokenizes the result after the written call (:func:`tinyllm.toolcalling.target_spans`)."""
    spans = [(example.output, True)]
    if task.tools is not None:
        from tinyllm.toolcalling import target_spans

        call = example.meta.get("tool_call")
        result = call.get("result") if isinstance(call, dict) else None
        spans = target_spans(task, example.output, result if isinstance(result, str) else None)
    text, trained = spans[-1]
    return [*spans[:-1], (text + eos, trained)]


def collate(items: Sequence[Encoded], pad_id: int, task: str = "") -> Batch:
    """Left-pad encoded examples into a :class:`Batch` (answers end at the right edge)."""
    torch = torch_module()
    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)  # [B, T]
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(items), width), dtype=torch.long)  # [B, T]
    for i, e in enumerate(items):
        n = len(e.input_ids)
        ids[i, width - n :] = torch.tensor(e.input_ids)
        labels[i, width - n :] = torch.tensor(e.labels)
        mask[i, width - n :] = 1
    return Batch(ids, mask, labels, task)


def batch_order(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless lists of ``batch_size`` indices into ``n`` examples (a new permutation each
    epoch, from ``seed``): the order every backend draws a task's examples in."""
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            perm = list(range(n))
            rng.shuffle(perm)
            order += perm
        take, order = order[:batch_size], order[batch_size:]
        yield take


def batches(data: Sequence[Encoded], batch_size: int, seed: int, task: str = "") -> Iterator[Batch]:
    """Endless shuffled batches (a new permutation each epoch, from ``seed``)."""
    for take in batch_order(len(data), batch_size, seed):
        yield collate([data[i] for i in take], 0, task)


def prompt_ids(batch: Batch) -> list[list[int]]:
    """Each row's prompt: its tokens before the first answer token (a masked span inside
    the answer, such as an inserted tool result, is not prompt). Batch tensors [B, T]."""
    prompts = []
    for ids, mask, labels in zip(batch.input_ids, batch.attention_mask, batch.labels, strict=True):
        answer = (labels != IGNORE_INDEX).nonzero()
        end = int(answer[0, 0]) if len(answer) else len(ids)
        prompts.append(ids[:end][mask[:end] == 1].tolist())
    return prompts


def answer_logits(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict answer tokens, and those tokens.

    Left padding puts every answer in the last K positions, so the LM head (a large
    share of a small model's compute: vocab x hidden per position) runs on K positions
    only. Returns logits [B, K, V] and targets [B, K] (IGNORE_INDEX where not an answer).
    A batch without answer tokens (every answer truncated away) gives K = 0: logits
    [B, 0, V], still part of the model's graph, so a loss over them is 0 and backward runs.
    """
    answer = batch.labels != IGNORE_INDEX  # [B, T]
    rows = answer.any(dim=1)  # [B]: rows with an answer token
    width = batch.labels.shape[1]
    # a row without one would give argmax 0; it must not pull ``first`` to the start
    first = int(answer[rows].float().argmax(dim=1).min().item()) if rows.any() else width
    positions = (batch.attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, T]
    logits = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=positions,
        logits_to_keep=width - first + 1,  # positions from first-1 (predicts first) on
    ).logits  # [B, K + 1, V]
    return logits[:, :-1], batch.labels[:, first:]


def answer_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits [B, K, V] against targets [B, K] over the answer tokens
    (not IGNORE_INDEX); 0, with a graph, when there are none (where a plain mean is NaN)."""
    torch = torch_module()
    total = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


def sft_loss(model: Any, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over answer tokens. Batch tensors [B, T]."""
    logits, targets = answer_logits(model, batch)  # [B, K, V], [B, K]
    return answer_ce(logits, targets)


def with_lora(model: Any, config: TrainConfig) -> Any:
    """Wrap a transformers model with a fresh peft LoRA (seeded init); base weights frozen."""
    torch = torch_module()
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise missing_dependency("peft", "train", "LoRA training") from e
    n_layers = model.config.num_hidden_layers
    if config.layers is not None and config.layers > n_layers:
        raise ConfigError(f"layers={config.layers} but the model has {n_layers} layers")
    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        target_modules=list(config.targets),
        lora_dropout=0.0,
        bias="none",
        # Upper layers only: backward then stops there, roughly halving a step's cost.
        layers_to_transform=(
            list(range(n_layers - config.layers, n_layers)) if config.layers else None
        ),
    )
    return get_peft_model(model, lora)


def adapter_of(peft_model: Any, config: TrainConfig) -> LoraAdapter:
    """The trained LoRA of a peft model as a tinyllm adapter (peft tensor names).

    Layers without LoRA (``config.layers``) get zero tensors: every adapter covers every
    layer, so the runtime's slot stacking and merging need no special case.
    """
    from peft import get_peft_model_state_dict

    from tinyllm.adapters import adapter_shapes
    from tinyllm.models import config_from_hf

    state = dict(get_peft_model_state_dict(peft_model))
    shapes = adapter_shapes(
        config_from_hf(peft_model.config, "student"), config.rank, config.targets
    )
    for name, shape in shapes.items():
        state.setdefault("base_model.model." + name, np.zeros(shape, np.float32))
    return from_peft_state_dict(state, config.rank, config.alpha, config.targets)


def train(
    model: Any,
    data: Iterator[Batch],
    config: TrainConfig,
    loss_fn: LossFn = sft_loss,
    *,
    steps: int | None = None,
    on_step: Callable[[int, float], bool] | None = None,
    progress: str | None = None,
) -> TrainResult:
    """AdamW with linear warmup on the model's trainable parameters: the shared
    :func:`tinyllm.torchkit.train_loop` with this config's optimizer settings.

    Args:
        model: a transformers (or peft-wrapped) model; only ``requires_grad`` params train.
        data: batches to draw from.
        loss_fn: ``(model, batch) -> scalar loss``.
        steps: override ``config.steps``.
        on_step: called after each step with (step, loss); returning True stops early.
        progress: a tqdm label, or None for no bar.
    """
    settings = LoopSettings(
        steps=steps if steps is not None else config.steps,
        lr=config.lr,
        weight_decay=config.weight_decay,
        warmup=config.warmup,
        grad_clip=config.grad_clip,
        seed=config.seed,
    )
    return train_loop(model, data, loss_fn, settings, on_step=on_step, progress=progress)


def train_lora(
    model: Any,
    tokenizer: Any,
    task: TaskSpec,
    examples: Sequence[Example],
    config: TrainConfig,
    progress: bool = False,
    *,
    loss_fn: LossFn = sft_loss,
    method: str = "",
    sft_first: int = 0,
) -> tuple[LoraAdapter, TrainResult]:
    """Train one task's LoRA on ``examples``; the model is returned to its base state.

    ``loss_fn`` is SFT's by default; KD and GRPO pass theirs (``method`` names it in the
    progress bar). ``sft_first`` supervised steps run first on the same LoRA (GRPO on tool
    calls: a base model writes no valid call to reward). Returns the adapter and the loss
    curve of the ``loss_fn`` steps.
    """
    data = encode(tokenizer, task, examples, config.max_len)
    peft_model = with_lora(model, config)
    label = f"{task.name} ({method})" if method else task.name
    data_batches = batches(data, config.batch_size, config.seed, task.name)
    if sft_first:
        first = f"{task.name} (sft before {method or 'training'})" if progress else None
        train(peft_model, data_batches, config, steps=sft_first, progress=first)
    result = train(peft_model, data_batches, config, loss_fn, progress=label if progress else None)
    adapter = adapter_of(peft_model, config)
    peft_model.unload()  # removes the LoRA layers; the base weights were frozen
    return adapter, result


def train_full(
    model: Any,
    tokenizer: Any,
    task: TaskSpec,
    examples: Sequence[Example],
    config: TrainConfig,
    progress: bool = False,
) -> TrainResult:
    """Full fine-tuning of every weight of ``model`` (in place) on one task's examples."""
    data = encode(tokenizer, task, examples, config.max_len)
    for p in model.parameters():
        p.requires_grad_(True)
    return train(
        model,
        batches(data, config.batch_size, config.seed, task.name),
        config,
        progress=task.name if progress else None,
    )
