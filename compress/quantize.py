"""The quantization recipe: float bundle in, quantized bundle (packed weights) out.

Steps: load the float model, collect (or reuse) each task's calibration Hessians, fold an
adapter in merged mode, quantize every linear weight, write the packed weights with the
float rest, the Hessian cache under ``stats/hessians/`` and the quantization spec.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from tinyllm.adapters import LoraAdapter
from tinyllm.bundle import Bundle, BundleWriter, check_output_path
from tinyllm.compress.backends import QuantJob, backend
from tinyllm.compress.hessian import (
    HESSIAN_DIR,
    AdapterApplied,
    Calibration,
    TaskHessians,
    batches,
    calibration_texts,
    collect_hessians,
)
from tinyllm.compress.mlgptq import QuantSettings, task_errors
from tinyllm.errors import BundleError, ConfigError
from tinyllm.lineage import bundle_name, child_manifest
from tinyllm.manifest import WEIGHTS
from tinyllm.quantformat import QuantSpec, packed_tensors
from tinyllm.tasks import Suite, TaskSpec

LORA_MODES = ("separate", "merged")


@dataclass(frozen=True)
class QuantOutcome:
    """What the recipe did: the bundle, per-task output errors, timings, reused tasks."""

    bundle: Bundle
    task_errors: dict[str, float]
    calibrated: list[str]
    reused: list[str]
    seconds_calibration: float
    seconds_quantization: float


def fingerprint(source: Bundle, adapter_file: str | None, lora: str, cal: Calibration) -> str:
    """What a task's Hessians depend on: base weights, its adapter, samples, seed, mode."""
    files = source.manifest.files
    parts = [files[WEIGHTS].sha256, files[adapter_file].sha256 if adapter_file else "-"]
    parts += [lora, str(cal.samples), str(cal.seed)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def target_id(source: Bundle, fold: tuple[str, LoraAdapter] | None) -> str:
    """What identifies the float target weights: the base file and any folded adapter."""
    files = source.manifest.files
    folded = files[source.manifest.adapters[fold[0]].file].sha256 if fold else "-"
    return f"{files[WEIGHTS].sha256}+{folded}"


def adapters_for(source: Bundle, names: list[str]) -> dict[str, LoraAdapter]:
    """The source bundle's adapters of the calibrated tasks (shapes checked on open)."""
    return {t: source.adapter(t) for t in names if t in source.manifest.adapters}


def merged_adapter(
    adapters: Mapping[str, LoraAdapter], lora: str
) -> tuple[str, LoraAdapter] | None:
    """(task, adapter) that merged mode folds into the base (None: nothing to fold)."""
    if lora not in LORA_MODES:
        raise ConfigError(f"unknown LoRA mode {lora!r}; use one of {LORA_MODES}")
    if lora == "separate" or not adapters:
        return None
    if len(adapters) > 1:
        raise ConfigError(
            f"--lora merged folds one adapter into the base, but tasks {sorted(adapters)} each "
            "have one; compress one task (names=[TASK]) or use --lora separate"
        )
    return next(iter(adapters.items()))


def calibrate(
    model: Any,
    tokenizer: Any,
    source: Bundle,
    suite: Suite,
    cal: Calibration,
    lora: str,
    progress: bool,
) -> tuple[dict[str, TaskHessians], list[str]]:
    """Each task's Hessians: reused from ``cal.cached`` when the fingerprint matches, else
    collected with the task's adapter applied (separate mode). Returns (hessians, computed)."""
    from tinyllm.suite import load_split, prepare_tasks

    out: dict[str, TaskHessians] = {}
    computed = []
    for task in cal.tasks:
        entry = source.manifest.adapters.get(task.name)
        fp = fingerprint(source, entry.file if entry else None, lora, cal)
        cached = cal.cached.get(task.name)
        if cached is not None:
            if cached.fingerprint != fp:
                raise BundleError(
                    f"cached Hessians of task {task.name!r} were made from other weights, "
                    "adapter or calibration settings; run a full compress instead of --add-task"
                )
            out[task.name] = cached
            continue
        prepare_tasks([task])
        texts = calibration_texts(
            task, load_split(suite, task, "train"), cal.samples, tokenizer, cal.seed
        )
        data = list(batches(texts, tokenizer))
        adapter = source.adapter(task.name) if entry and lora == "separate" else None
        with (
            tqdm(total=len(data), desc=f"calibrate {task.name}", disable=not progress) as bar,
            AdapterApplied(model, source.config, adapter),
        ):
            hessians, tokens = collect_hessians(model, source.config, data, lambda: bar.update())
        out[task.name] = TaskHessians(task.name, hessians, tokens, len(texts), fp)
        computed.append(task.name)
    return out, computed


def quantize_bundle(
    source: Bundle,
    out: str | os.PathLike[str],
    suite: Suite,
    settings: QuantSettings,
    cal: Calibration,
    *,
    lora: str = "separate",
    overwrite: bool = False,
    progress: bool = True,
) -> QuantOutcome:
    """Quantize ``source`` (a float bundle) into a new bundle at ``out``.

    The backend named by ``settings.method`` (:mod:`tinyllm.compress.backends`) makes
    the packed weights; this recipe calibrates, folds, reports the errors and writes.

    Args:
        source: the float bundle (base weights, tokenizer, per-task adapters).
        out: the bundle folder to write.
        suite: the task suite the calibration tasks come from.
        settings: method, bits, group size, GPTQ options.
        cal: calibration tasks, samples per task, and cached Hessians to reuse.
        lora: ``separate`` (adapters kept in float beside the quantized base) or
            ``merged`` (the one task adapter folded into the base first).
        overwrite: replace an existing bundle at ``out``.
        progress: show progress bars.
    """
    from tinyllm.models import load_model

    method = backend(settings.method)
    settings.check()
    check_output_path(source, out)
    if source.quant_spec() is not None:
        raise ConfigError(f"{source.path} is already quantized; compress its float parent")
    fold = merged_adapter(adapters_for(source, [t.name for t in cal.tasks]), lora)
    loaded = load_model(source, "float32")
    start = time.perf_counter()
    task_h: dict[str, TaskHessians] = {}
    computed: list[str] = []
    if method.needs_hessians or cal.cached:  # RTN: cached Hessians give its error report
        task_h, computed = calibrate(
            loaded.model, loaded.tokenizer, source, suite, cal, lora, progress
        )
    seconds_cal = time.perf_counter() - start
    weights = float_targets(loaded.model, source, fold)
    start = time.perf_counter()
    job = QuantJob(loaded, source, suite, settings, cal, task_h, weights, fold, progress)
    output = method.quantize(job)
    seconds_q = time.perf_counter() - start
    reported = output.error_results or output.results
    errors = task_errors(output.weights, source.config, reported, task_h, target_id(source, fold))
    spec = quant_spec(source, settings, sorted(output.results), lora, task_h, cal)
    packed = {name: r.packed for name, r in output.results.items()}
    folded = fold[0] if fold else None
    bundle = write_quantized(
        source, out, output.weights, packed, spec, task_h, cal, folded, overwrite, output.rescaled
    )
    reused = sorted(set(task_h) - set(computed))
    return QuantOutcome(bundle, errors, computed, reused, seconds_cal, seconds_q)


def float_targets(
    model: Any, source: Bundle, fold: tuple[str, LoraAdapter] | None
) -> dict[str, torch.Tensor]:
    """The float weights to quantize: the model's, with a merged adapter folded for good."""
    if fold is not None:
        AdapterApplied(model, source.config, fold[1]).__enter__()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def quant_spec(
    source: Bundle,
    settings: QuantSettings,
    tensors: list[str],
    lora: str,
    task_h: Mapping[str, TaskHessians],
    cal: Calibration,
) -> QuantSpec:
    """The manifest's quantization spec, with what ``--add-task`` needs to resume."""
    return QuantSpec(
        method=settings.method + ("-awq" if settings.awq else ""),
        bits=settings.bits,
        group_size=settings.group_size,
        symmetric=settings.symmetric,
        tensors=tensors,
        act_order=settings.act_order,
        backend="nncf" if settings.method == "nncf" else "tinyllm",
        lora=lora,
        calibration={
            "tasks": {t: {"samples": h.samples, "tokens": h.tokens} for t, h in task_h.items()},
            "samples_per_task": cal.samples,
            "seed": cal.seed,
            "source_path": str(source.path.resolve()),
            "source_hash": source.hash,
            "damp": settings.damp,
            "aggregation": settings.hessian_aggregation,
        },
    )


def write_quantized(
    source: Bundle,
    out: str | os.PathLike[str],
    weights: Mapping[str, torch.Tensor],
    packed: Mapping[str, Any],
    spec: QuantSpec,
    task_h: Mapping[str, TaskHessians],
    cal: Calibration,
    folded: str | None,
    overwrite: bool,
    rescaled: Mapping[str, LoraAdapter] | None = None,
) -> Bundle:
    """Write the quantized bundle: packed + float tensors, Hessian cache, manifest.

    ``rescaled`` adapters (AWQ's scaled space) replace the source's files of those tasks.
    """
    man = source.manifest
    adapters = {t: a for t, a in man.adapters.items() if t != folded}
    rescaled = rescaled or {}
    keep = {a.file for t, a in adapters.items() if t not in rescaled}
    with BundleWriter(out, overwrite=overwrite) as writer:
        for task, adapter in rescaled.items():
            writer.save_tensors(adapters[task].file, adapter.tensors)
        for file in man.files:
            if file.startswith("adapters/") and file not in keep:
                continue
            if file == WEIGHTS or file.startswith(("engines/", HESSIAN_DIR + "/")):
                continue
            writer.copy_file(source.path / file, file)
        rest = {k: v.to(_torch_dtype(man.dtype)) for k, v in weights.items() if k not in packed}
        if man.model.tie_word_embeddings:
            rest.pop("lm_head.weight", None)
        tensors = {**{k: v.numpy() for k, v in rest.items()}, **packed_tensors(dict(packed))}
        writer.save_tensors(WEIGHTS, tensors)
        for task, h in task_h.items():
            name = f"{HESSIAN_DIR}/{task}.safetensors"
            prev = cal.cache_bundle
            if task in cal.cached and prev is not None and name in prev.manifest.files:
                entry = prev.manifest.files[name] if prev.hashes_checked else None
                writer.copy_file(prev.path / name, name, entry)
            else:
                h.save(writer.path(name))
        specs = {t.name: _task_dict(t) for t in cal.tasks}
        manifest = child_manifest(
            source,
            "compress",
            name=bundle_name(out),
            quantization=spec.to_dict(),
            lora_mode=("merged" if spec.lora == "merged" else "separate")
            if adapters
            else man.lora_mode,
            tasks={**man.tasks, **specs},
            adapters=adapters,
            engines={},
        )
        return writer.commit(manifest)


def _task_dict(task: TaskSpec) -> dict[str, Any]:
    from tinyllm.config import to_dict

    result: dict[str, Any] = to_dict(task)
    return result


def _torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
