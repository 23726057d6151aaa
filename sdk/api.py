"""The public API. Every CLI command is a thin shim over one function here.

The functions on bundles and suites themselves (open, import, add tasks, inspect,
load) are defined here and forward to the core. Each stage's functions live in the
module of :mod:`tinyllm.facade` that wires that stage, and are re-exported here:
``evaluate`` (facade/evaluate.py), ``export`` and ``export_hf`` (facade/export.py),
``serve`` (facade/serve.py), ``profile`` (facade/profile.py), ``distill``
(facade/distill.py), ``label_data`` and ``merge_labels`` (facade/label.py),
``compress`` and ``prune`` (facade/compress.py).

Importing this module loads no stage, no engine and no torch: every function imports
what it runs when called; the defaults shown in the signatures come from the stages'
leaf options modules, so each is written once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from tinyllm.bundle import Bundle
from tinyllm.facade.compress import compress, prune
from tinyllm.facade.distill import distill
from tinyllm.facade.evaluate import evaluate
from tinyllm.facade.export import export, export_hf
from tinyllm.facade.label import label_data, merge_labels
from tinyllm.facade.profile import profile
from tinyllm.facade.serve import serve
from tinyllm.manifest import Stage
from tinyllm.tasks import BUILTIN

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter
    from tinyllm.inspection import Inspection
    from tinyllm.models import LoadedModel
    from tinyllm.runtime.doctor import DoctorReport
    from tinyllm.tasks import Suite, TaskSpec

__all__ = [
    "add_tasks",
    "compress",
    "distill",
    "doctor",
    "evaluate",
    "export",
    "export_hf",
    "import_model",
    "inspect",
    "label_data",
    "load_tasks",
    "load_torch_model",
    "merge_labels",
    "open_bundle",
    "prepare_data",
    "profile",
    "prune",
    "serve",
]

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
    from tinyllm.models import import_bundle

    return import_bundle(source, out, dtype=dtype, name=name, overwrite=overwrite)


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
    from tinyllm.lineage import add_tasks as write_child

    return write_child(
        open_bundle(bundle),
        out,
        tasks,
        adapters,
        lora_mode=lora_mode,
        stage=stage,
        overwrite=overwrite,
    )


def inspect(bundle: PathLike) -> Inspection:
    """Summarize a bundle: parameters by kind, size, dtype, tasks, adapters, engines, lineage."""
    from tinyllm.inspection import inspect_bundle

    return inspect_bundle(open_bundle(bundle))


def doctor() -> DoctorReport:
    """What this machine can run: ONNX Runtime providers, CUDA/cuDNN/TensorRT libraries,
    GPUs, CPU ISA, RAM, and whether each export target works here (and why not)."""
    from tinyllm.runtime.doctor import doctor as probe

    return probe()


def load_torch_model(bundle: PathLike | Bundle, dtype: DTypeName | None = None) -> LoadedModel:
    """Load a bundle as a transformers model with its tokenizer (needs ``tinyllm[torch]``)."""
    from tinyllm.models import load_model

    opened = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    return load_model(opened, dtype)


def load_tasks(tasks: PathLike = BUILTIN) -> Suite:
    """Load a suite file; ``"builtin"`` is the built-in six-task suite."""
    from tinyllm.suite import load_tasks as load

    return load(tasks)


def prepare_data(
    tasks: PathLike = BUILTIN, *, names: list[str] | None = None, force: bool = False
) -> dict[str, dict[str, str]]:
    """Build the data of every builder task of a suite into the cache.

    Returns task name -> split -> sha256 of the split file (same for the same spec).
    """
    from tinyllm.suite import prepare_tasks

    return prepare_tasks(load_tasks(tasks).select(names), force)
