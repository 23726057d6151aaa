"""The public API. Every CLI command is a thin shim over one function here."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tinyllm.bundle import Bundle, BundleWriter
from tinyllm.errors import ConfigError
from tinyllm.inspection import Inspection, inspect_bundle
from tinyllm.manifest import SCHEMA_VERSION, TOKENIZER_DIR, WEIGHTS, Manifest, Stage
from tinyllm.version import __version__

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter
    from tinyllm.compress.recipe import PruneReport
    from tinyllm.evaluation import EvalReport
    from tinyllm.models import LoadedModel
    from tinyllm.runtime.verify import Verification
    from tinyllm.tasks import Suite, TaskSpec

BUILTIN = "builtin"

PathLike = str | os.PathLike[str]
DTypeName = Literal["float32", "float16", "bfloat16"]


def open_bundle(path: PathLike) -> Bundle:
    """Open and fully validate a bundle (schema, hashes, tensor shapes)."""
    return Bundle.open(path)


def import_model(
    source: str,
    out: PathLike,
    *,
    dtype: DTypeName = "float32",
    name: str | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Import a model into a new bundle: the start of every tinyllm pipeline.

    Args:
        source: a preset name (``smollm2-135m``, ``qwen2.5-0.5b-shape``, ``tiny-llama``,
            ``tiny-qwen2``), a ``.gguf`` file, or a Hugging Face model folder.
        out: the bundle folder to write (``NAME.tllm``).
        dtype: dtype of the stored weights.
        name: the bundle's name (default: the folder name without ``.tllm``).
        overwrite: replace an existing bundle at ``out`` (atomically).
    """
    from tinyllm.models import bundle_state_dict, load_source

    with BundleWriter(out, overwrite=overwrite) as writer:
        loaded = load_source(source, dtype)
        writer.save_tensors(WEIGHTS, bundle_state_dict(loaded.model, loaded.config))
        loaded.tokenizer.save_pretrained(str(writer.path(TOKENIZER_DIR)))
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            name=name or Path(out).name.removesuffix(".tllm"),
            stage="import",
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            tinyllm_version=__version__,
            source=loaded.source,
            model=loaded.config,
            dtype=dtype,
        )
        return writer.commit(manifest)


def add_tasks(
    bundle: PathLike,
    out: PathLike,
    tasks: Sequence[TaskSpec],
    adapters: Mapping[str, LoraAdapter] | None = None,
    *,
    lora_mode: Literal["separate", "merged"] = "separate",
    stage: Stage = "distill",
    overwrite: bool = False,
) -> Bundle:
    """Write a child bundle that serves ``tasks``, each with its LoRA adapter if given.

    Base weights, tokenizer and engines are shared with the parent (hard links); tasks and
    adapters already in the parent are kept unless named again (then replaced).

    Args:
        bundle: the parent bundle.
        out: the bundle folder to write.
        tasks: task specs to record in the manifest (the router and eval read them).
        adapters: task name -> adapter (``adapters/TASK.safetensors``); every name must be
            one of ``tasks`` or already a task of the parent.
        lora_mode: ``separate`` (adapters beside one base) or ``merged``.
        stage: the pipeline stage recorded for the child.
        overwrite: replace an existing bundle at ``out``.
    """
    import dataclasses

    from tinyllm.config import to_dict

    parent = open_bundle(bundle)
    adapters = dict(adapters or {})
    task_dicts = {**parent.manifest.tasks, **{t.name: to_dict(t) for t in tasks}}
    unknown = sorted(set(adapters) - set(task_dicts))
    if unknown:
        raise ConfigError(f"adapter {unknown[0]!r} names no task; add its task spec too")
    for name, adapter in adapters.items():
        adapter.check(parent.config, f"adapter {name!r}")
    entries = dict(parent.manifest.adapters)
    with BundleWriter(out, overwrite=overwrite) as writer:
        for file in parent.manifest.files:
            if not any(file == entries[n].file for n in adapters if n in entries):
                writer.copy_file(parent.path / file, file)
        for name, adapter in adapters.items():
            file = f"adapters/{name}.safetensors"
            writer.save_tensors(file, adapter.tensors)
            entries[name] = adapter.entry(file)
        manifest = dataclasses.replace(
            parent.manifest,
            name=Path(out).name.removesuffix(".tllm"),
            stage=stage,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            tinyllm_version=__version__,
            lineage=[parent.manifest.ref(str(parent.path)), *parent.manifest.lineage],
            tasks=task_dicts,
            adapters=entries,
            lora_mode=lora_mode if entries else parent.manifest.lora_mode,
        )
        return writer.commit(manifest)


def inspect(bundle: PathLike) -> Inspection:
    """Summarize a bundle: parameters by kind, size, dtype, tasks, adapters, engines, lineage."""
    return inspect_bundle(open_bundle(bundle))


def load_torch_model(bundle: PathLike | Bundle, dtype: DTypeName | None = None) -> LoadedModel:
    """Load a bundle as a transformers model with its tokenizer (needs ``tinyllm[torch]``)."""
    from tinyllm.models import load_model

    opened = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    return load_model(opened, dtype)


def load_tasks(tasks: PathLike = BUILTIN) -> Suite:
    """Load a suite file; ``"builtin"`` is the built-in six-task suite."""
    from tinyllm.suite import builtin_suite_path
    from tinyllm.tasks import load_suite

    return load_suite(builtin_suite_path() if str(tasks) == BUILTIN else tasks)


def prepare_data(
    tasks: PathLike = BUILTIN, *, names: list[str] | None = None, force: bool = False
) -> dict[str, dict[str, str]]:
    """Build the data of every builder task of a suite into the cache.

    Returns task name -> split -> sha256 of the split file (same for the same spec).
    """
    from tinyllm.suite import prepare

    suite = load_tasks(tasks)
    selected = suite.select(names)
    return {t.name: prepare(t, force) for t in selected if t.data.builder is not None}


def evaluate(
    bundle: PathLike,
    tasks: PathLike = BUILTIN,
    *,
    names: list[str] | None = None,
    limit: int | None = None,
    few_shot: int = 0,
    batch_size: int = 8,
    backend: str = "torch",
    engine: str | None = None,
    progress: bool = True,
) -> EvalReport:
    """Run every task's test split through the bundle and score it.

    Args:
        bundle: the bundle to evaluate.
        tasks: a suite YAML file, or ``"builtin"``.
        names: evaluate only these tasks (default: all).
        limit: evaluate only the first N test examples of each task.
        few_shot: number of worked examples from the train split put before each input.
        batch_size: prompts generated together.
        backend: ``torch`` (the bundle's weights in transformers) or ``engine`` (an
            exported engine of the bundle, see ``tinyllm export``).
        engine: which engine for the ``engine`` backend (default: the CPU one).
        progress: show a progress bar per task.
    """
    import time

    from tinyllm.evaluation import (
        EngineGenerator,
        EvalReport,
        Generator,
        TorchGenerator,
        evaluate_task,
    )
    from tinyllm.suite import prepare

    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of examples, got {limit}")
    if batch_size < 1 or few_shot < 0:
        raise ConfigError("batch_size must be >= 1 and few_shot >= 0")
    if backend not in ("torch", "engine"):
        raise ConfigError(f"backend must be 'torch' or 'engine', got {backend!r}")
    suite = load_tasks(tasks)
    selected = suite.select(names)
    opened = open_bundle(bundle)
    start = time.perf_counter()
    for task in selected:
        if task.data.builder is not None:
            prepare(task)
    generator: Generator
    if backend == "engine":
        from tinyllm.runtime import Engine

        runner = Engine.load(opened, engine=engine, max_batch=batch_size)
        generator = EngineGenerator(runner)
        label = f"engine {runner.info.target}-{runner.info.precision}"
    else:
        loaded = load_torch_model(opened)
        generator, label = TorchGenerator(loaded.model, loaded.tokenizer), "torch"
    results = [
        evaluate_task(
            generator,
            suite,
            task,
            limit=limit,
            few_shot=few_shot,
            batch_size=batch_size,
            progress=progress,
        )
        for task in selected
    ]
    return EvalReport(
        bundle=str(opened.path),
        bundle_hash=opened.hash,
        suite=str(tasks),
        few_shot=few_shot,
        limit=limit,
        batch_size=batch_size,
        backend=label,
        results=results,
        seconds=time.perf_counter() - start,
    )


def export(
    bundle: PathLike,
    target: str = "onnx-cpu",
    out: PathLike | None = None,
    *,
    quant: str | None = None,
    precision: str | None = None,
    block_size: int = 32,
    max_seq_len: int | None = None,
    lora_slots: int = 0,
    lora_rank: int = 0,
    accuracy_level: int = 4,
    overwrite: bool = False,
) -> tuple[Bundle, Verification]:
    """Export an inference engine into a new bundle (``out``, default: replace ``bundle``).

    The engine is always verified against the torch model (prefill and 16 decode steps on
    sample prompts); a failed verification raises and leaves no engine behind.

    Args:
        bundle: the bundle to export.
        target: ``onnx-cpu`` (contrib ops, fp32/int8/int4), ``onnx-cuda`` (fp16) or
            ``onnx-standard`` (standard ops only, fp32/fp16: TensorRT and others).
        out: where to write the new bundle (may be the same path: replaced atomically).
        quant: ``int4`` or ``int8``: round-to-nearest weight quantization at export.
        precision: ``fp32`` or ``fp16`` for float engines (default per target).
        block_size: quantization block along the input dimension.
        max_seq_len: the longest context the engine supports (default: the model's).
        lora_slots: adapter slots of the multi-LoRA inputs (0: a plain base model).
        lora_rank: rank of those slots.
        accuracy_level: MatMulNBits compute mode for int engines: 4 (int8 activations,
            fastest on CPU) or 0 (float activations, exact).
        overwrite: replace an existing bundle at ``out`` (writing onto ``bundle`` itself
            always replaces it).
    """
    import dataclasses

    from tinyllm.manifest import EngineEntry
    from tinyllm.runtime.export import ExportOptions, write_engine, write_info
    from tinyllm.runtime.verify import VerificationError, verify_export

    parent = open_bundle(bundle)
    options = ExportOptions(
        target=target,
        precision=precision,
        quant=quant,
        block_size=block_size,
        max_seq_len=max_seq_len,
        lora_slots=lora_slots,
        lora_rank=lora_rank,
        accuracy_level=accuracy_level,
    )
    name = options.engine_name()
    target_path = Path(out) if out is not None else parent.path
    same = target_path.resolve() == parent.path.resolve()
    with BundleWriter(target_path, overwrite=same or overwrite) as writer:
        for file in parent.manifest.files:
            if not file.startswith(f"engines/{name}/"):
                writer.copy_file(parent.path / file, file)
        folder = writer.staging / "engines" / name
        info, weights = write_engine(parent, folder, options)
        verification = verify_export(parent, folder, info, weights, accuracy_level)
        if not verification.passed:
            raise VerificationError(
                f"the {name} engine does not reproduce the model; nothing was written.\n"
                + verification.format()
            )
        write_info(folder, info, verification.to_dict())
        entry = EngineEntry(
            target=target,
            path=f"engines/{name}",
            precision=info.precision,
            info={"flavour": info.flavour, "max_seq_len": info.max_seq_len},
        )
        manifest = dataclasses.replace(
            parent.manifest,
            stage="export",
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            tinyllm_version=__version__,
            lineage=[parent.manifest.ref(str(parent.path)), *parent.manifest.lineage],
            engines={**parent.manifest.engines, name: entry},
        )
        return writer.commit(manifest), verification


def prune(
    bundle: PathLike,
    out: PathLike,
    ratio: float = 0.8,
    *,
    tasks: PathLike = BUILTIN,
    names: list[str] | None = None,
    calib_samples: int = 16,
    min_vocab: int = 8192,
    heal_steps: int = 60,
    heal_batch_size: int = 2,
    heal_lr: float = 1e-5,
    seed: int = 0,
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
        min_vocab: the vocabulary keeps at least this many tokens (the tokenizer's most
            frequent fill the gap) before MLP width is pruned.
        heal_steps / heal_batch_size / heal_lr: the healing run (0 steps: no healing).
        seed: healing seed (deterministic on CPU).
    """
    from tinyllm.compress.heal import HealConfig
    from tinyllm.compress.recipe import PruneOptions, prune_bundle
    from tinyllm.distill.losses import kd_loss

    options = PruneOptions(
        ratio=ratio,
        calib_samples=calib_samples,
        min_vocab=min_vocab,
        heal=HealConfig(steps=heal_steps, batch_size=heal_batch_size, lr=heal_lr, seed=seed),
    )
    options.check()
    suite = load_tasks(tasks)
    parent = open_bundle(bundle)
    return prune_bundle(
        parent,
        Path(out),
        suite,
        suite.select(names),
        options,
        kd_loss,
        overwrite=overwrite,
        progress=progress,
    )
