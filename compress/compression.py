"""One ``tinyllm compress`` run: optionally prune, quantize (or add a task), evaluate, report.

The recipe behind :func:`tinyllm.api.compress`. Pruning heals with a loss passed in
(``heal_loss``), so this module never imports distill; the facade passes the shared KD
loss. Importing it needs no torch: the steps import what they use.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tinyllm.errors import ConfigError

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle
    from tinyllm.compress.heal import LossFn
    from tinyllm.compress.mlgptq import QuantSettings
    from tinyllm.compress.quantize import Calibration, QuantOutcome
    from tinyllm.compress.report import CompressReport
    from tinyllm.tasks import Suite, TaskSpec

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class CompressOptions:
    """What a compress run does (the arguments of :func:`tinyllm.api.compress`)."""

    quant: str = "int4-gptq"
    calib_samples: int = 32
    group_size: int = 32
    symmetric: bool = False
    act_order: bool = False
    lora: str = "separate"
    add_task: str | None = None
    prune_ratio: float | None = None
    eval_limit: int | None = None
    few_shot: int = 3

    def check(self) -> None:
        """Reject options that do not combine."""
        if self.prune_ratio is not None and self.add_task is not None:
            raise ConfigError("prune_ratio and add_task do not combine: prune before adding")


@dataclass(frozen=True)
class QuantPlan:
    """What the quantization step runs on: source bundle, settings, calibration, LoRA mode."""

    source: Bundle
    settings: QuantSettings
    calibration: Calibration
    lora: str
    quant: str


def compress_bundle(
    bundle: Bundle,
    out: PathLike,
    suite: Suite,
    names: Sequence[str] | None,
    options: CompressOptions,
    *,
    heal_loss: LossFn | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Bundle, CompressReport]:
    """Compress ``bundle`` into ``out``; see :func:`tinyllm.api.compress` for the options."""
    from tinyllm.bundle import check_output_path
    from tinyllm.compress.quantize import quantize_bundle

    start = time.perf_counter()
    options.check()
    check_output_path(bundle, out)
    if options.prune_ratio is not None:
        bundle = prune_first(bundle, out, suite, names, options, heal_loss, overwrite, progress)
    plan = plan_quantization(bundle, suite, names, options)
    outcome = quantize_bundle(
        plan.source,
        out,
        suite,
        plan.settings,
        plan.calibration,
        lora=plan.lora,
        overwrite=overwrite,
        progress=progress,
    )
    metrics = evaluate_before_after(
        plan.source, outcome.bundle, suite, plan.calibration.tasks, options, progress
    )
    return outcome.bundle, build_report(plan, outcome, metrics, options, start)


def prune_first(
    bundle: Bundle,
    out: PathLike,
    suite: Suite,
    names: Sequence[str] | None,
    options: CompressOptions,
    heal_loss: LossFn | None,
    overwrite: bool,
    progress: bool,
) -> Bundle:
    """Prune to ``options.prune_ratio`` into ``OUT-pruned.tllm`` beside ``out``."""
    from tinyllm.compress.pruneoptions import PruneOptions
    from tinyllm.compress.recipe import prune_bundle

    if heal_loss is None or options.prune_ratio is None:
        raise ConfigError("pruning before quantization needs prune_ratio and a healing loss")
    prune_options = PruneOptions(ratio=options.prune_ratio, calib_samples=options.calib_samples)
    prune_options.check()
    stem = Path(out).name.removesuffix(".tllm")
    pruned, _ = prune_bundle(
        bundle,
        Path(out).with_name(f"{stem}-pruned.tllm"),
        suite,
        suite.select(list(names) if names is not None else None),
        prune_options,
        heal_loss,
        overwrite=overwrite,
        progress=progress,
    )
    return pruned


def plan_quantization(
    bundle: Bundle, suite: Suite, names: Sequence[str] | None, options: CompressOptions
) -> QuantPlan:
    """Settings and calibration from the options, or from the bundle for ``add_task``."""
    from tinyllm.compress.backends import parse_quant
    from tinyllm.compress.hessian import Calibration
    from tinyllm.compress.incremental import plan_add_task
    from tinyllm.compress.mlgptq import QuantSettings

    if options.add_task is not None:
        plan = plan_add_task(bundle, suite, options.add_task)
        quant = f"int{plan.settings.bits}-{plan.settings.method}"
        return QuantPlan(plan.source, plan.settings, plan.calibration, plan.lora, quant)
    bits, method = parse_quant(options.quant)
    settings = QuantSettings(
        method.removesuffix("-awq"),
        bits,
        options.group_size,
        options.symmetric,
        options.act_order,
        awq=method == "nncf-awq",
    )
    selected = suite.select(list(names) if names is not None else None)
    calibration = Calibration(selected, options.calib_samples)
    return QuantPlan(bundle, settings, calibration, options.lora, options.quant)


def evaluate_before_after(
    before: Bundle,
    after: Bundle,
    suite: Suite,
    tasks: Sequence[TaskSpec],
    options: CompressOptions,
    progress: bool,
) -> tuple[dict[str, float], dict[str, float], str]:
    """Each calibrated task's score before and after (torch, few-shot), and how measured.

    Empty scores when ``options.eval_limit`` is None (no evaluation).
    """
    from tinyllm.evaluation import evaluate_bundle

    if options.eval_limit is None:
        return {}, {}, ""
    scores = []
    for bundle in (before, after):
        report = evaluate_bundle(
            bundle,
            suite,
            list(tasks),
            limit=options.eval_limit,
            few_shot=options.few_shot,
            progress=progress,
        )
        scores.append({r.task: r.score for r in report.results})
    info = (
        f"metric: torch, {options.few_shot}-shot, first {options.eval_limit} test examples per task"
    )
    return scores[0], scores[1], info


def build_report(
    plan: QuantPlan,
    outcome: QuantOutcome,
    metrics: tuple[dict[str, float], dict[str, float], str],
    options: CompressOptions,
    start: float,
) -> CompressReport:
    """The before/after report of the run that started at ``start`` (perf_counter)."""
    from tinyllm.compress.report import CompressReport
    from tinyllm.inspection import inspect_bundle
    from tinyllm.manifest import WEIGHTS

    source, result = plan.source, outcome.bundle
    spec = result.quant_spec()
    shapes = source.config.weight_shapes()
    return CompressReport(
        source=str(source.path),
        out=str(result.path),
        quant=plan.quant,
        lora=plan.lora,
        parameters_before=inspect_bundle(source).parameters,
        parameters_after=inspect_bundle(result).parameters,
        quantized_parameters=sum(
            shapes[n][0] * shapes[n][1] for n in (spec.tensors if spec else [])
        ),
        bytes_before=source.size_bytes(),
        bytes_after=result.size_bytes(),
        weights_bytes_before=source.manifest.files[WEIGHTS].size,
        weights_bytes_after=result.manifest.files[WEIGHTS].size,
        calibrated=outcome.calibrated,
        reused=outcome.reused,
        task_errors=outcome.task_errors,
        seconds_calibration=outcome.seconds_calibration,
        seconds_quantization=outcome.seconds_quantization,
        seconds=time.perf_counter() - start,
        metrics_before=metrics[0],
        metrics_after=metrics[1],
        eval_info=metrics[2],
    )
