"""Incremental quantization: add a task to a quantized bundle without re-calibrating the rest.

The previous bundle records its float source (path and hash), its settings, and every
task's Hessians under ``stats/hessians/``. Adding a task runs only that task's forward
pass; the element-wise max over tasks is associative and exact, so the result is bit for
bit the weights a full run over all tasks would produce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinyllm.bundle import Bundle
from tinyllm.compress.hessian import HESSIAN_DIR, Calibration, TaskHessians
from tinyllm.compress.mlgptq import QuantSettings
from tinyllm.errors import BundleError, ConfigError
from tinyllm.tasks import Suite


@dataclass(frozen=True)
class IncrementalPlan:
    """What an ``--add-task`` run needs: the float source, settings, calibration, LoRA mode."""

    source: Bundle
    settings: QuantSettings
    calibration: Calibration
    lora: str


def plan_add_task(previous: Bundle, suite: Suite, task: str) -> IncrementalPlan:
    """Plan adding ``task`` to the quantized bundle ``previous`` (see the module docstring)."""
    spec = previous.quant_spec()
    if spec is None or not spec.calibration or spec.method not in ("gptq", "mlgptq"):
        raise ConfigError(
            f"{previous.path} is not a calibrated quantized bundle (from `tinyllm compress "
            "--quant int4-gptq|int4-mlgptq`): --add-task has no Hessians to reuse"
        )
    cal: dict[str, Any] = dict(spec.calibration)
    tasks = dict(cal["tasks"])
    if task in tasks:
        raise ConfigError(f"task {task!r} is already calibrated in {previous.path}")
    source = Bundle.open(cal["source_path"])
    if source.hash != cal["source_hash"]:
        raise BundleError(
            f"the float source {cal['source_path']} changed since {previous.path} was made "
            "(hash differs); run a full compress"
        )
    cached = {t: TaskHessians.load(previous.file(f"{HESSIAN_DIR}/{t}.safetensors")) for t in tasks}
    settings = QuantSettings(
        method=spec.method,
        bits=spec.bits,
        group_size=spec.group_size,
        symmetric=spec.symmetric,
        act_order=spec.act_order,
        damp=float(cal["damp"]),
        aggregation=str(cal.get("aggregation", "max")),  # pooled gptq ignores it
    )
    specs = [suite.task(t) for t in [*tasks, task]]
    calibration = Calibration(
        tasks=specs,
        samples=int(cal["samples_per_task"]),
        seed=int(cal["seed"]),
        cached=cached,
        cache_bundle=previous,
    )
    return IncrementalPlan(source, settings, calibration, spec.lora or "separate")
