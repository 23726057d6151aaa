"""``tinyllm distill``: size the run, choose the training loop (``own`` or ``trl``), call
the stage's recipe."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tinyllm.tasks import BUILTIN

if TYPE_CHECKING:
    from tinyllm.distill.recipe import DistillReport

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class TrainerChoice:
    """Which training loop runs (``own`` or ``trl``) and the trl backend's options."""

    backend: str = "own"
    run_dir: str | os.PathLike[str] | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    grad_accum: int = 1
    precision: str = "fp32"

    def trl_options(self) -> Any:
        """The TrlOptions (checked), or None for the own backend (which takes none)."""
        if self.backend != "trl":
            changed = [
                name
                for name, value in (
                    ("run_dir", self.run_dir),
                    ("checkpoint_every", self.checkpoint_every),
                    ("resume", self.resume or None),
                    ("grad_accum", None if self.grad_accum == 1 else self.grad_accum),
                    ("precision", None if self.precision == "fp32" else self.precision),
                )
                if value is not None
            ]
            if changed:
                from tinyllm.errors import ConfigError

                raise ConfigError(
                    f"{', '.join(changed)}: options of --backend trl, not of {self.backend!r}"
                )
            return None
        from tinyllm.distill.trlrun import TrlOptions

        return TrlOptions(
            run_dir=str(self.run_dir) if self.run_dir is not None else None,
            save_steps=self.checkpoint_every,
            resume=self.resume,
            grad_accum=self.grad_accum,
            precision=self.precision,  # type: ignore[arg-type]
        )


def distill(
    tasks: PathLike = BUILTIN,
    *,
    teacher: str = "oracle",
    student: PathLike,
    out: PathLike,
    names: list[str] | None = None,
    method: str = "sft",
    curriculum: bool = False,
    quick: bool = False,
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    rank: int | None = None,
    layers: int | None = None,
    train_limit: int | None = None,
    eval_limit: int | None = None,
    seed: int = 0,
    balance: float | None = None,
    backend: str = TrainerChoice.backend,
    run_dir: PathLike | None = TrainerChoice.run_dir,
    checkpoint_every: int | None = TrainerChoice.checkpoint_every,
    resume: bool = TrainerChoice.resume,
    grad_accum: int = TrainerChoice.grad_accum,
    precision: str = TrainerChoice.precision,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DistillReport:
    """Distill a suite's tasks from a teacher into a student bundle with per-task LoRA.

    Writes ``out``: the student's base weights plus one adapter per task and the task
    specs (``lora_mode`` separate), then evaluates teacher, student and the student's
    zero-shot baseline on each task's test split.

    Args:
        tasks: a suite YAML file, or ``"builtin"``.
        teacher: ``oracle`` (the suite's own labels) or a teacher spec (``bundle:PATH``,
            ``hf:PATH``, ``openai:MODEL@URL``, ``pipeline:builtin``).
        student: a student bundle folder or a preset name (imported beside ``out``).
        out: the bundle to write.
        names: distill only these tasks (default: all).
        method: ``sft`` (sequence-level: SFT on teacher outputs), ``kd`` (logit KD when
            the teacher is a local model with the student's tokenizer, else sequence KD),
            ``grpo`` (RL with verifier rewards).
        curriculum: the three-stage multi-task curriculum instead of one LoRA per task
            (with ``method`` sft or kd; grpo is refused).
        quick: small sizes for CI (minutes on CPU); explicit sizes still win.
        steps, batch_size, lr, rank: training sizes (per task; per stage for curriculum).
        layers: LoRA on the last N layers only (cheaper steps); default all layers.
        train_limit: use at most this many training examples per task.
        eval_limit: evaluate on the first N test examples per task.
        seed: seeds data order, LoRA init and sampling.
        balance: redraw each task's training data balanced over its inputs' wordings
            (their words without the numbers; :mod:`tinyllm.distill.balance`) with
            temperature sampling ``p_w ∝ n_w^(1/T)`` at this T (1: the shares as they
            are, larger: towards uniform); default: the data as the teacher gave it.
        backend: ``own`` (tinyllm's compact loop) or ``trl`` (trl's ``SFTTrainer`` and
            ``GRPOTrainer``: runs under ``accelerate launch``, checkpoints, accumulation,
            mixed precision, TensorBoard; every method, and the curriculum with SFT or
            KD). The options below are the trl backend's.
        run_dir: where the trl backend keeps checkpoints and TensorBoard logs, per task
            (per stage for the curriculum, whose checkpoints also hold its own state).
        checkpoint_every: a checkpoint every N steps (needs ``run_dir``).
        resume: continue each task from its latest checkpoint in ``run_dir``.
        grad_accum: micro-batches per step; the global batch stays ``batch_size``.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (bf16/fp16 where the GPU has it).
        overwrite: replace an existing bundle at ``out``.
        progress: progress bars.
        log: where progress lines go (default: stderr).
    """
    from tinyllm.distill.recipe import DistillOptions, run_distill

    options = DistillOptions.sized(
        quick=quick,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        rank=rank,
        layers=layers,
        train_limit=train_limit,
        eval_limit=eval_limit,
        seed=seed,
        balance=balance,
    )
    trainer = TrainerChoice(backend, run_dir, checkpoint_every, resume, grad_accum, precision)
    options = dataclasses.replace(options, backend=trainer.backend, trl=trainer.trl_options())
    return run_distill(
        tasks,
        teacher=teacher,
        student=student,
        out=out,
        names=names,
        method=method,
        curriculum=curriculum,
        options=options,
        overwrite=overwrite,
        progress=progress,
        log=log,
    )
