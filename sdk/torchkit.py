"""The torch pieces the stages share: one training loop, and batch generation with HF models.

- :func:`train_loop` is the one optimization loop (AdamW, linear warmup, gradient
  clipping, a loss per step). Distillation's SFT, KD and GRPO
  (:func:`tinyllm.distill.sft.train`) and pruning's healing
  (:func:`tinyllm.compress.heal.heal`) plug their batches and loss into it.
- :func:`generate_text` is greedy or sampled generation from prompt texts (evaluation's
  :class:`~tinyllm.evaluation.TorchGenerator`, the local teacher);
  :func:`sample_continuations` samples answers to token-id prompts (on-policy KD, GRPO).

Core, so distill and compress both import it and never each other. torch is imported
inside the functions: importing this module needs no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tinyllm.errors import ConfigError, missing_dependency

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100  # label of a position that has no target (prompt, padding)
B = TypeVar("B")


def torch_module() -> Any:
    """torch, or a MissingDependencyError naming the ``train`` extra."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise missing_dependency("torch", "train", "training") from e
    return torch


@dataclass
class TrainResult:
    """Loss per step of a run (and the step count actually run)."""

    losses: list[float] = field(default_factory=list)

    @property
    def first(self) -> float:
        """Mean loss of the first tenth of the run."""
        k = max(1, len(self.losses) // 10)
        return sum(self.losses[:k]) / k

    @property
    def last(self) -> float:
        """Mean loss of the last tenth of the run."""
        k = max(1, len(self.losses) // 10)
        return sum(self.losses[-k:]) / k


@dataclass(frozen=True)
class LoopSettings:
    """The optimizer side of a run: AdamW with linear warmup over ``warmup`` steps.

    ``warmup`` 0 or 1 means the full learning rate from the first step.
    """

    steps: int
    lr: float
    weight_decay: float = 0.0
    warmup: int = 0
    grad_clip: float = 1.0
    seed: int = 0


def train_loop(
    model: Any,
    data: Iterator[B],
    loss_fn: Callable[[Any, B], torch.Tensor],
    settings: LoopSettings,
    *,
    on_step: Callable[[int, float], bool] | None = None,
    progress: str | None = None,
) -> TrainResult:
    """Train ``model``'s parameters that require grad, one batch of ``data`` per step.

    Seeds torch with ``settings.seed`` first; leaves the model in eval mode.

    Args:
        model: a torch module (transformers, peft-wrapped, ...).
        data: batches; one is drawn per step.
        loss_fn: ``(model, batch) -> scalar loss``.
        settings: steps, learning rate, weight decay, warmup, gradient clip, seed.
        on_step: called after each step with (step, loss); returning True stops early.
        progress: a tqdm label, or None for no bar.
    """
    torch = torch_module()
    from tqdm import tqdm

    torch.manual_seed(settings.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = max(1, settings.warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    model.train()
    result = TrainResult()
    bar = tqdm(range(settings.steps), desc=progress, disable=progress is None, leave=False)
    for step in bar:
        loss = loss_fn(model, next(data))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        opt.step()
        sched.step()
        result.losses.append(float(loss.item()))
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
        if on_step is not None and on_step(step + 1, result.losses[-1]):
            break
    model.eval()
    return result


def generate_text(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_new_tokens: int,
    *,
    samples: int = 1,
    temperature: float = 0.0,
) -> list[str]:
    """Completions of prompt texts (left-padded into one batch), special tokens dropped.

    Greedy when ``temperature`` is 0, else ``samples`` draws per text (plain sampling: no
    top-k, no top-p). Returns ``len(texts) * samples`` strings, each text's together.
    The tokenizer must pad on the left and have a pad token.
    """
    torch = torch_module()
    batch = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    options: dict[str, Any] = {"do_sample": temperature > 0, "num_return_sequences": samples}
    if temperature > 0:
        options.update(temperature=temperature, top_k=0, top_p=1.0)
    with torch.inference_mode():
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **options,
        )  # [B * samples, P + N]
    new_tokens = out[:, batch["input_ids"].shape[1] :]
    return [str(t) for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def sample_continuations(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
) -> list[list[int]]:
    """One sampled answer per token-id prompt, up to and including eos (if it came).

    The prompts are left-padded into one batch; the model samples in eval mode without
    gradients and gets its training mode back.
    """
    torch = torch_module()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = tokenizer.eos_token_id
    width = max(len(p) for p in prompts)
    first = next(iter(model.parameters()), None)  # a trl run's student may be on a GPU
    device = first.device if first is not None else None
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor(
        [[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device
    )  # [B, P], as ids
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=eos,
        )  # [B, P + N]
    model.train(was_training)
    return [row[: row.index(eos) + 1] if eos in row else row for row in out[:, width:].tolist()]
