"""``tinyllm distill``: the run's sizes (full or quick) and the call into the distill recipe."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
        train=config, train_limit=sizes.train_limit, eval_limit=sizes.eval_limit
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
