"""Quantize every linear weight of a decoder: RTN, GPTQ, or multi-task GPTQ.

The objective of multi-task GPTQ (``mlgptq``), per linear weight ``W [N, K]`` of the base:

- Each task ``t`` has calibration inputs ``X_t`` of this layer, collected from the float
  model *with the task's LoRA adapter applied* (so the target weight of task ``t`` is
  ``W_t = W + ΔW_t``), and its Hessian ``H_t = 2 X_t X_tᵀ / n_t``.
- With adapters kept separate (``--lora separate``) the served weight of task ``t`` is
  ``Q + ΔW_t`` (the adapter runs in float beside the quantized base), so task ``t``'s
  output error is ``||(Q + ΔW_t - W_t) X_t||² = ||(Q - W) X_t||²``: one shared ``Q`` is
  chosen for the base ``W``, and the adapters enter through the activations they produce.
- The tasks are combined by the element-wise maximum ``H = max_t H_t`` (not by pooling the
  data, which lets high-volume or high-norm tasks dominate), and GPTQ minimizes
  ``tr((Q - W) H (Q - W)ᵀ)``. Every input direction a task relies on keeps at least that
  task's weight in the objective.
- With ``--lora merged`` the adapter is folded first (``W ← W + ΔW``) and the same
  objective applies to the merged weight.

``gptq`` with mixed data uses ``H = Σ_t n_t H_t / Σ_t n_t`` instead (the pooled data's
Hessian); ``rtn`` needs no Hessian. Per-task output error ``tr(E H_t Eᵀ) / tr(W H_t Wᵀ)``
is reported for every task, averaged over the layer weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from tinyllm.adapters import PROJECTIONS, module_name
from tinyllm.compress.gptq import (
    QuantResult,
    gptq_quantize,
    output_error,
    quadratic_energy,
    rtn_quantize,
)
from tinyllm.compress.hessian import AGGREGATIONS, SITES, TaskHessians, aggregate, site_key
from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError
from tinyllm.quantformat import PackedWeight

SWEEP_METHODS = ("rtn", "gptq", "mlgptq")  # what quantize_weights runs (backends.SweepBackend)


@dataclass(frozen=True)
class QuantSettings:
    """How to quantize: method (a backend of :mod:`tinyllm.compress.backends`), bits,
    group size, options.

    ``awq`` applies to ``nncf`` only (AWQ + scale estimation on calibration data).
    ``aggregation`` overrides how multi-task GPTQ combines the per-task Hessians
    (:func:`tinyllm.compress.hessian.aggregate`; default ``max``).
    """

    method: str = "mlgptq"
    bits: int = 4
    group_size: int = 32
    symmetric: bool = False
    act_order: bool = False
    damp: float = 0.01
    awq: bool = False
    aggregation: str = "max"

    def check(self) -> None:
        """Raise ConfigError on an unknown aggregation (the registry checks the method)."""
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"unknown Hessian aggregation {self.aggregation!r}; use one of {AGGREGATIONS}"
            )

    @property
    def hessian_aggregation(self) -> str:
        """How the per-task Hessians are combined (pooled GPTQ: always the mixed data)."""
        return "mixed" if self.method == "gptq" else self.aggregation


def linear_weights(config: ModelConfig) -> list[tuple[int, str, str]]:
    """(layer, kind, weight name) of every quantized linear weight, in model order."""
    return [
        (layer, kind, f"{module_name(layer, kind)}.weight")
        for layer in range(config.num_hidden_layers)
        for kind in PROJECTIONS
    ]


def quantize_weights(
    weights: Mapping[str, torch.Tensor],
    config: ModelConfig,
    settings: QuantSettings,
    task_hessians: Mapping[str, TaskHessians],
    on_weight: Callable[[str], object] = lambda name: None,
) -> dict[str, QuantResult]:
    """Quantize every linear weight of the decoder.

    Args:
        weights: float weights by HF name (W [N, K] for the linears).
        config: the model config.
        settings: method, bits, group size, GPTQ options.
        task_hessians: task -> its Hessians (ignored for rtn).
        on_weight: called with each weight name when done (progress).
    """
    settings.check()
    if settings.method not in SWEEP_METHODS:
        raise ConfigError(
            f"quantize_weights runs {', '.join(SWEEP_METHODS)}, not {settings.method!r}: "
            "quantize through tinyllm.compress.backends.backend(method)"
        )
    hessians: dict[str, torch.Tensor] = {}
    if settings.method != "rtn":
        hessians = aggregate(task_hessians, settings.hessian_aggregation)
    out: dict[str, QuantResult] = {}
    for layer in range(config.num_hidden_layers):
        for site, kinds in SITES.items():
            # Projections reading the same input share H: one sweep over their stacked rows
            # gives exactly what separate sweeps would (GPTQ treats rows independently).
            names = [f"{module_name(layer, kind)}.weight" for kind in kinds]
            w = torch.cat([weights[n].float() for n in names])
            if settings.method == "rtn":
                result = rtn_quantize(w, settings.bits, settings.group_size, settings.symmetric)
            else:
                result = gptq_quantize(
                    w,
                    hessians[f"model.layers.{layer}.{site}"],
                    settings.bits,
                    settings.group_size,
                    settings.symmetric,
                    damp=settings.damp,
                    act_order=settings.act_order,
                )
            out.update(split_rows(result, names, [weights[n].shape[0] for n in names]))
            for n in names:
                on_weight(n)
    return out


def split_rows(result: QuantResult, names: list[str], rows: list[int]) -> dict[str, QuantResult]:
    """Cut a quantized stack of weights back into its parts (rows are independent)."""
    out, start = {}, 0
    p = result.packed
    for name, n in zip(names, rows, strict=True):
        sl = slice(start, start + n)
        zp = None if p.zero_points is None else p.zero_points[sl]
        part = PackedWeight(p.qweight[sl], p.scales[sl], zp, p.bits, p.block_size, p.in_features)
        out[name] = QuantResult(part, result.dequantized[sl])
        start += n
    return out


def task_errors(
    weights: Mapping[str, torch.Tensor],
    config: ModelConfig,
    results: Mapping[str, QuantResult],
    task_hessians: Mapping[str, TaskHessians],
    weights_id: str = "",
) -> dict[str, float]:
    """Each task's relative output error ``||(Q - W) X_t||² / ||W X_t||²``, mean over weights.

    Args:
        weights: the float target weights (the base, or merged weights in merged mode).
        results: the quantized weights by name.
        task_hessians: task -> its Hessians; the ``tr(W H_t Wᵀ)`` they cache under
            ``weights_id`` are reused, missing ones are computed and cached there.
        weights_id: what identifies ``weights`` (empty: nothing is reused or cached).
    """
    errors = {}
    for task, th in task_hessians.items():
        energies = th.energies.setdefault(weights_id, {}) if weights_id else {}
        per_weight = []
        for layer, kind, name in linear_weights(config):
            w, h = weights[name], th.hessians[site_key(layer, kind)]
            if name not in energies:
                energies[name] = quadratic_energy(w, h)
            per_weight.append(output_error(w, results[name].dequantized, h, energies[name]))
        errors[task] = sum(per_weight) / len(per_weight)
    return errors
