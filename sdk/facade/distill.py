"""``tinyllm distill``: the run's sizes (full or quick) and the call into the distill recipe."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tinyllm.distill.recipe import DistillReport


@dataclass(frozen=True)
class DistillSizes:
    """Training sizes of a distillation run (per task; per stage for the curriculum).

    :data:`QUICK` is the CI-sized run; sizes given explicitly replace either.
    """

    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    rank: int = 8
    train_limit: int = 2000
    eval_limit: int = 100

    def given(
        self,
        *,
        steps: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        rank: int | None = None,
        train_limit: int | None = None,
        eval_limit: int | None = None,
    ) -> DistillSizes:
        """These sizes with the ones given (not None) replaced."""
        return DistillSizes(
            steps=self.steps if steps is None else steps,
            batch_size=self.batch_size if batch_size is None else batch_size,
            lr=self.lr if lr is None else lr,
            rank=self.rank if rank is None else rank,
            train_limit=self.train_limit if train_limit is None else train_limit,
            eval_limit=self.eval_limit if eval_limit is None else eval_limit,
        )


QUICK = DistillSizes(steps=20, batch_size=4, train_limit=200, eval_limit=20)


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
        from tinyllm.distill.trlbackend import TrlOptions

        return TrlOptions(
            run_dir=str(self.run_dir) if self.run_dir is not None else None,
            save_steps=self.checkpoint_every,
            resume=self.resume,
            grad_accum=self.grad_accum,
            precision=self.precision,  # type: ignore[arg-type]
        )


def distill_suite(
    tasks: str | os.PathLike[str],
    *,
    teacher: str,
    student: str | os.PathLike[str],
    out: str | os.PathLike[str],
    names: list[str] | None,
    method: str,
    curriculum: bool,
    sizes: DistillSizes,
    layers: int | None,
    seed: int,
    trainer: TrainerChoice,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None] | None,
) -> DistillReport:
    """Build the training config from ``sizes`` and run the distill recipe."""
    from tinyllm.distill.recipe import DistillOptions, run_distill
    from tinyllm.distill.sft import TrainConfig

    config = TrainConfig(
        steps=sizes.steps,
        batch_size=sizes.batch_size,
        lr=sizes.lr,
        rank=sizes.rank,
        alpha=2 * sizes.rank,
        seed=seed,
        layers=layers,
    )
    options = DistillOptions(
        train=config,
        train_limit=sizes.train_limit,
        eval_limit=sizes.eval_limit,
        backend=trainer.backend,
        trl=trainer.trl_options(),
    )
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
        log=log or (lambda line: print(line, file=sys.stderr)),
    )
