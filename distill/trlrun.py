"""What every trl run of ours shares (SFT, KD, GRPO and the curriculum's stages): its
options (:class:`TrlOptions`), trl's import, mixed precision, the ``Trainer`` arguments,
the run's folder and checkpoints, our warmup schedule, the callback that records each
step's loss, and the layout of a global batch (rows in our order, left-padded,
micro-batches per process and accumulation step).

The recipes on top: :mod:`tinyllm.distill.trlbackend` (SFT and logit KD on
``SFTTrainer``) and :mod:`tinyllm.distill.trlgrpo` (GRPO on ``GRPOTrainer``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tinyllm.distill.sft import (
    Encoded,
    TrainConfig,
    TrainResult,
    batch_order,
    collate,
    torch_module,
)
from tinyllm.errors import ConfigError, missing_dependency

Precision = Literal["fp32", "bf16", "fp16", "auto"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16", "auto")
Backend = Literal["own", "trl"]
BACKENDS: tuple[Backend, ...] = ("own", "trl")


@dataclass(frozen=True)
class TrlOptions:
    """How the trl backend runs: where checkpoints and logs go, how often it checkpoints,
    accumulation and precision.

    ``run_dir`` holds ``TASK/checkpoint-N`` folders and ``TASK/tensorboard`` logs (None: a
    temporary folder, removed after the run, and no checkpoints). ``save_steps``: a
    checkpoint every N optimizer steps (None: none). ``resume``: continue each task from
    its latest checkpoint in ``run_dir``. ``grad_accum``: micro-batches per optimizer
    step (the global batch stays ``batch_size``). ``precision``: ``auto`` is bf16 where
    the GPU has it, fp16 on other GPUs and fp32 on CPU.
    """

    run_dir: str | None = None
    save_steps: int | None = None
    resume: bool = False
    grad_accum: int = 1
    precision: Precision = "fp32"
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; use one of {PRECISIONS}")
        if self.grad_accum < 1:
            raise ConfigError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if self.save_steps is not None and self.save_steps < 1:
            raise ConfigError(f"save_steps must be >= 1, got {self.save_steps}")
        if (self.save_steps or self.resume) and self.run_dir is None:
            raise ConfigError("checkpoints (save_steps, resume) need a run_dir to keep them in")


def trl_module() -> Any:
    """trl, or a MissingDependencyError naming the ``train`` extra."""
    try:
        import trl
    except ImportError as e:
        raise missing_dependency("trl", "train", "training with --backend trl") from e
    return trl


def mixed_precision(precision: Precision) -> tuple[bool, bool]:
    """(bf16, fp16) for the Trainer; an explicit bf16/fp16 the machine lacks is an error."""
    torch = torch_module()
    cuda = torch.cuda.is_available()
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return bf16_ok, cuda and not bf16_ok
    if precision == "fp16" and not cuda:
        raise ConfigError("precision fp16 needs a CUDA GPU; use fp32 (or bf16) on CPU")
    if precision == "bf16" and cuda and not bf16_ok:
        raise ConfigError("this GPU has no bf16; use fp16 or fp32")
    return precision == "bf16", precision == "fp16"


def training_row(item: Encoded) -> dict[str, Any]:
    """An SFT/KD row as the trainer reads it: ids and labels (prompt masked)."""
    return {"input_ids": item.input_ids, "labels": item.labels}


def collate_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The trainer's collator: rows left-padded as our loop pads its batches
    (:func:`tinyllm.distill.sft.collate`), so every answer ends at the right edge and the
    loss projects only the answer positions through the LM head. Returns input_ids,
    attention_mask and labels, each [B, T]."""
    batch = collate([Encoded(row["input_ids"], row["labels"]) for row in rows], 0)
    return {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "labels": batch.labels,
    }


def ordered_rows(
    data: Sequence[Encoded],
    config: TrainConfig,
    steps: int,
    row: Callable[[Encoded], dict[str, Any]] = training_row,
) -> list[dict[str, Any]]:
    """The rows of ``steps`` global batches, in the order our own loop draws them
    (:func:`tinyllm.distill.sft.batch_order`); ``row`` makes each example's row once."""
    order: Iterator[list[int]] = batch_order(len(data), config.batch_size, config.seed)
    made: dict[int, dict[str, Any]] = {}
    rows = []
    for _ in range(steps):
        for i in next(order):
            if i not in made:
                made[i] = row(data[i])
            rows.append(made[i])
    return rows


def micro_parts(rows: Sequence[Any], accum: int, processes: int, rank: int) -> list[list[Any]]:
    """This process's micro-batches of one global batch, as accelerate shards a sequential
    dataset: micro-batch k of process p is the global batch's micro-batch ``k * processes + p``."""
    size = len(rows) // (accum * processes)
    return [
        list(rows[(k * processes + rank) * size : (k * processes + rank + 1) * size])
        for k in range(accum)
    ]


def micro_batch(config: TrainConfig, options: TrlOptions, processes: int) -> int:
    """Per-process micro-batch size: the global batch over accumulation steps and processes."""
    parts = options.grad_accum * processes
    if config.batch_size % parts:
        raise ConfigError(
            f"batch_size {config.batch_size} must be a multiple of grad_accum x processes "
            f"({options.grad_accum} x {processes}) so every step trains on the same global batch"
        )
    return config.batch_size // parts


def run_folder(options: TrlOptions, name: str) -> contextlib.AbstractContextManager[str]:
    """``run_dir/NAME``, or a temporary folder removed afterwards."""
    if options.run_dir is None:
        return tempfile.TemporaryDirectory(prefix=f"tinyllm-trl-{name}-")
    path = Path(options.run_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(path))


def common_args(config: TrainConfig, options: TrlOptions, folder: str) -> dict[str, Any]:
    """The Trainer settings every trl run of ours shares (SFT, KD and GRPO)."""
    bf16, fp16 = mixed_precision(options.precision)
    return {
        # Without it accelerate ignores a CPU launch's WORLD_SIZE: N processes would each
        # train alone instead of as one gloo process group.
        "use_cpu": not torch_module().cuda.is_available(),
        "output_dir": folder,
        "max_steps": config.steps,
        "gradient_accumulation_steps": options.grad_accum,
        "learning_rate": config.lr,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.grad_clip,
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": bf16,
        "fp16": fp16,
        "logging_steps": 1,
        "save_strategy": "steps" if options.save_steps else "no",
        "save_steps": options.save_steps or 500,
        "report_to": ["tensorboard"] if options.tensorboard else "none",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        # trl 1.16 turns it on by default: every step would recompute the activations
        # (our loop does not), which costs speed and saves nothing at this size; with a
        # LoRA on frozen embeddings its reentrant form would also pass no gradient.
        "gradient_checkpointing": False,
    }


def warmup_scheduler(trainer: Any, optimizer: Any) -> Any:
    """Our schedule on a trl trainer: linear warmup over ``trainer.tiny_warmup`` steps to a
    constant rate (the Trainer's own schedules decay)."""
    warmup = max(1, trainer.tiny_warmup)
    trainer.lr_scheduler = torch_module().optim.lr_scheduler.LambdaLR(
        optimizer or trainer.optimizer, lambda s: min(1.0, (s + 1) / warmup)
    )
    return trainer.lr_scheduler


def loss_recorder(
    result: TrainResult,
    on_step: Callable[[int, float], bool] | None,
    on_save: Callable[[str, int], None] | None = None,
) -> Any:  # a transformers TrainerCallback
    """A callback that appends each step's logged loss to ``result`` (and may stop the run),
    and calls ``on_save(checkpoint folder, step)`` on rank 0 after each checkpoint."""
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> Any:
            if logs and "loss" in logs:
                result.losses.append(float(logs["loss"]))
                if on_step is not None and on_step(state.global_step, result.losses[-1]):
                    control.should_training_stop = True
            return control

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if on_save is not None and state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                on_save(str(folder), state.global_step)
            return control

    return Recorder()


def latest_checkpoint(folder: str) -> str | None:
    """The newest ``checkpoint-N`` folder in ``folder``, or None."""
    found = [p for p in Path(folder).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return str(max(found, key=lambda p: int(p.name.split("-")[-1]))) if found else None


def checkpoint_losses(checkpoint: str) -> list[float]:
    """The per-step losses a checkpoint's ``trainer_state.json`` logged."""
    import json

    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return [float(e["loss"]) for e in state.get("log_history", []) if "loss" in e]
