"""``tinyllm prune`` and ``tinyllm compress``: the compress stage, healed with distill's KD loss.

Compress never imports distill; this is where the two meet.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle
    from tinyllm.compress.compression import CompressOptions
    from tinyllm.compress.pruneoptions import PruneOptions
    from tinyllm.compress.recipe import PruneReport
    from tinyllm.compress.report import CompressReport

PathLike = str | os.PathLike[str]


def prune_healed(
    bundle: PathLike,
    out: PathLike,
    tasks: PathLike,
    names: Sequence[str] | None,
    options: PruneOptions,
    *,
    overwrite: bool,
    progress: bool,
) -> tuple[Bundle, PruneReport]:
    """Prune ``bundle`` into ``out``, healed by logit KD from the parent; ``tasks``
    (a suite file or ``"builtin"``) calibrates."""
    from pathlib import Path

    from tinyllm.bundle import Bundle
    from tinyllm.compress.recipe import prune_bundle
    from tinyllm.distill.losses import kd_loss
    from tinyllm.suite import load_tasks

    options.check()
    suite = load_tasks(tasks)
    parent = Bundle.open(bundle)
    selected = suite.select(list(names) if names is not None else None)
    return prune_bundle(
        parent, Path(out), suite, selected, options, kd_loss, overwrite=overwrite, progress=progress
    )


def compress_healed(
    bundle: PathLike,
    out: PathLike,
    tasks: PathLike,
    names: Sequence[str] | None,
    options: CompressOptions,
    *,
    overwrite: bool,
    progress: bool,
) -> tuple[Bundle, CompressReport]:
    """Compress ``bundle`` into ``out``, calibrated on ``tasks`` (a suite file or
    ``"builtin"``); a prune first heals with the KD loss."""
    from tinyllm.bundle import Bundle
    from tinyllm.compress.compression import compress_bundle
    from tinyllm.distill.losses import kd_loss
    from tinyllm.suite import load_tasks

    suite = load_tasks(tasks)
    return compress_bundle(
        Bundle.open(bundle),
        out,
        suite,
        names,
        options,
        heal_loss=kd_loss,
        overwrite=overwrite,
        progress=progress,
    )
