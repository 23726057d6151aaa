"""``tinyllm prune`` and ``tinyllm compress``: the compress stage, healed with distill's KD loss.

Compress never imports distill; this is where the two meet.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tinyllm.compress.compression import CompressOptions
from tinyllm.compress.pruneoptions import HealConfig, PruneOptions
from tinyllm.tasks import BUILTIN

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle
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


def compress(
    bundle: PathLike,
    out: PathLike,
    *,
    quant: str = CompressOptions.quant,
    tasks: PathLike = BUILTIN,
    names: list[str] | None = None,
    calib_samples: int = CompressOptions.calib_samples,
    group_size: int = CompressOptions.group_size,
    symmetric: bool = CompressOptions.symmetric,
    act_order: bool = CompressOptions.act_order,
    lora: str = CompressOptions.lora,
    add_task: str | None = CompressOptions.add_task,
    prune_ratio: float | None = CompressOptions.prune_ratio,
    eval_limit: int | None = CompressOptions.eval_limit,
    few_shot: int = CompressOptions.few_shot,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Bundle, CompressReport]:
    """Quantize a bundle's weights to int4/int8 (MatMulNBits packing), keeping its tasks.

    Args:
        bundle: the float bundle; with ``add_task``, a bundle this function made before.
        out: the quantized bundle to write.
        quant: ``int4-gptq`` (GPTQ on all tasks' calibration data pooled: the default,
            best measured, see docs/quality.md), ``int4-mlgptq`` (multi-task GPTQ:
            per-task Hessians, element-wise max), ``int4-rtn``; ``int8-*`` alike;
            ``int4-nncf``/``int8-nncf`` (NNCF weight compression, data-free),
            ``int4-nncf-awq`` (NNCF with AWQ and scale estimation).
        tasks: the suite (YAML or ``"builtin"``) whose train data calibrates.
        names: calibrate on these tasks only (default: all of the suite).
        calib_samples: calibration examples per task.
        group_size: input columns per scale/zero point.
        symmetric: symmetric quantization (no zero points).
        act_order: GPTQ visits columns by decreasing Hessian diagonal (static groups).
        lora: ``separate`` (adapters stay float beside one quantized base) or ``merged``
            (the one task adapter is folded into the base before quantization).
        add_task: add this suite task to an existing quantized bundle: only its forward
            pass runs, the other tasks' Hessians come from the bundle's ``stats/``.
        prune_ratio: first prune to this parameter ratio with :func:`prune` (healed by
            logit KD, calibrated on the same tasks); the pruned float bundle is kept
            beside ``out`` as ``OUT-pruned.tllm`` (the quantized bundle's parent), and
            the report's "before" is that pruned model.
        eval_limit: evaluate every task before and after on this many test examples
            (torch backend, ``few_shot`` shots); None skips evaluation.
        few_shot: worked examples per evaluation prompt.
        overwrite: replace an existing bundle at ``out``.
        progress: show progress bars.
    """
    options = CompressOptions(
        quant=quant,
        calib_samples=calib_samples,
        group_size=group_size,
        symmetric=symmetric,
        act_order=act_order,
        lora=lora,
        add_task=add_task,
        prune_ratio=prune_ratio,
        eval_limit=eval_limit,
        few_shot=few_shot,
    )
    return compress_healed(
        bundle, out, tasks, names, options, overwrite=overwrite, progress=progress
    )


def prune(
    bundle: PathLike,
    out: PathLike,
    ratio: float = PruneOptions.ratio,
    *,
    tasks: PathLike = BUILTIN,
    names: list[str] | None = None,
    calib_samples: int = PruneOptions.calib_samples,
    vocab_samples: int = PruneOptions.vocab_samples,
    min_vocab: int = PruneOptions.min_vocab,
    heal_steps: int = HealConfig.steps,
    heal_batch_size: int = HealConfig.batch_size,
    heal_lr: float = HealConfig.lr,
    seed: int = HealConfig.seed,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Bundle, PruneReport]:
    """Structured pruning to ``ratio`` of the parameters, healed by KD from the parent.

    Importance comes from activations on every task's train examples; the plan trims the
    vocabulary to the tokens the tasks (and the chat template) use, then MLP width, then
    query heads, then whole blocks. The child bundle (stage ``compress``) has the new
    config, the rewritten tokenizer and the plan in ``stats/prune.json``.

    Args:
        bundle: the parent bundle (without adapters).
        out: the bundle folder to write.
        ratio: fraction of the parameters kept, in (0, 1].
        tasks: a suite YAML file, or ``"builtin"``; ``names`` selects tasks.
        calib_samples: train examples per task for the activation statistics.
        vocab_samples: train conversations per task whose tokens the vocabulary keeps
            (more keeps more of the words unseen inputs use, at the cost of parameters).
        min_vocab: the vocabulary keeps at least this many tokens (the tokenizer's most
            frequent fill the gap) before MLP width is pruned.
        heal_steps / heal_batch_size / heal_lr: the healing run (0 steps: no healing).
        seed: healing seed (deterministic on CPU).
    """
    heal = HealConfig(steps=heal_steps, batch_size=heal_batch_size, lr=heal_lr, seed=seed)
    options = PruneOptions(
        ratio=ratio,
        calib_samples=calib_samples,
        vocab_samples=vocab_samples,
        min_vocab=min_vocab,
        heal=heal,
    )
    return prune_healed(bundle, out, tasks, names, options, overwrite=overwrite, progress=progress)
