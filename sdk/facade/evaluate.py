"""``tinyllm eval``: score a suite with a bundle's torch model or one of its engines."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tinyllm.errors import ConfigError
from tinyllm.tasks import BUILTIN

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle
    from tinyllm.evaluation import BundleGenerator, EvalReport

PathLike = str | os.PathLike[str]
BACKENDS = ("torch", "engine")
Loader = Callable[["Bundle", int], tuple["BundleGenerator", str]]


@dataclass(frozen=True)
class EvalOptions:
    """How a suite is evaluated (the arguments of :func:`tinyllm.api.evaluate`)."""

    limit: int | None = None
    few_shot: int = 0
    batch_size: int = 8
    backend: str = "torch"
    engine: str | None = None
    constrain: bool = True

    def check(self) -> None:
        """Reject bad sizes and an unknown backend before anything loads."""
        from tinyllm.evaluation import check_eval_args

        check_eval_args(self.limit, self.few_shot, self.batch_size)
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be 'torch' or 'engine', got {self.backend!r}")


def engine_loader(engine: str | None, constrain: bool, tasks: Sequence[str] = ()) -> Loader:
    """A loader of the bundle's exported engine, decoding as served (or raw). An engine
    with a merged adapter that would not serve every one of ``tasks`` is refused before
    any task runs."""

    def load(opened: Bundle, size: int) -> tuple[BundleGenerator, str]:
        from tinyllm.runtime import Engine
        from tinyllm.runtime.generator import EngineGenerator

        runner = Engine.load(opened, engine=engine, max_batch=size, constrain=constrain)
        merged = runner.info.merged_adapter
        others = [t for t in tasks if t != merged]
        if merged is not None and others:
            runner.close()
            raise ConfigError(
                f"this engine has task {merged!r}'s adapter merged into its "
                f"weights and serves only {merged!r}, not {', '.join(map(repr, others))}: "
                f"evaluate it with --task {merged}, or pick an engine with LoRA slots "
                "(--engine)"
            )
        mode = "constrained" if constrain else "raw"
        return EngineGenerator(
            runner
        ), f"engine {runner.info.target}-{runner.info.precision}, {mode}"

    return load


def evaluate_suite(
    bundle: str | os.PathLike[str],
    tasks: str | os.PathLike[str],
    names: Sequence[str] | None,
    options: EvalOptions,
    *,
    progress: bool,
) -> EvalReport:
    """Run the selected tasks' test splits of ``tasks`` (a suite file or ``"builtin"``)
    through the bundle and score them."""
    from tinyllm.bundle import Bundle
    from tinyllm.evaluation import evaluate_bundle, torch_generator
    from tinyllm.suite import load_tasks

    options.check()
    suite = load_tasks(tasks)
    selected = suite.select(list(names) if names is not None else None)
    load = (
        engine_loader(options.engine, options.constrain, [t.name for t in selected])
        if options.backend == "engine"
        else torch_generator
    )
    return evaluate_bundle(
        Bundle.open(bundle),
        suite,
        selected,
        load=load,
        suite_name=str(tasks),
        limit=options.limit,
        few_shot=options.few_shot,
        batch_size=options.batch_size,
        progress=progress,
    )


def evaluate(
    bundle: PathLike,
    tasks: PathLike = BUILTIN,
    *,
    names: list[str] | None = None,
    limit: int | None = EvalOptions.limit,
    few_shot: int = EvalOptions.few_shot,
    batch_size: int = EvalOptions.batch_size,
    backend: str = EvalOptions.backend,
    engine: str | None = EvalOptions.engine,
    constrain: bool = EvalOptions.constrain,
    progress: bool = True,
) -> EvalReport:
    """Run every task's test split through the bundle and score it.

    Args:
        bundle: the bundle to evaluate.
        tasks: a suite YAML file, or ``"builtin"``.
        names: evaluate only these tasks (default: all).
        limit: evaluate only the first N test examples of each task.
        few_shot: number of worked examples from the train split put before each input.
        batch_size: prompts generated together (the engine's rows).
        backend: ``torch`` (the bundle's weights in transformers) or ``engine`` (an
            exported engine of the bundle, see ``tinyllm export``, through the task
            router and decode loop that serving uses).
        engine: which engine for the ``engine`` backend (default: the CPU one).
        constrain: engine backend: decode as served, label tasks within their labels and
            JSON tasks as valid JSON; False measures the raw model.
        progress: show a progress bar per task.
    """
    options = EvalOptions(limit, few_shot, batch_size, backend, engine, constrain)
    return evaluate_suite(bundle, tasks, names, options, progress=progress)
