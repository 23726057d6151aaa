"""Child bundles: what a stage writes from a parent bundle, stamped with where it came from.

Every stage that makes a bundle from another (adding tasks, pruning, quantizing,
exporting) stamps the child's manifest here: the stage, the time, this tinyllm version,
and the parent first in the lineage.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tinyllm.bundle import Bundle, BundleWriter, check_output_path
from tinyllm.errors import ConfigError
from tinyllm.manifest import Manifest, Stage
from tinyllm.version import __version__

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter
    from tinyllm.tasks import TaskSpec


def now() -> str:
    """The time a manifest records (UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def bundle_name(out: str | os.PathLike[str]) -> str:
    """A bundle's name: its folder name without ``.tllm``."""
    return Path(out).name.removesuffix(".tllm")


def child_manifest(parent: Bundle, stage: Stage, **changes: Any) -> Manifest:
    """The parent's manifest with ``changes``, stamped as a ``stage`` child of ``parent``."""
    return dataclasses.replace(
        parent.manifest,
        stage=stage,
        created_at=now(),
        tinyllm_version=__version__,
        lineage=[parent.manifest.ref(str(parent.path)), *parent.manifest.lineage],
        **changes,
    )


def add_tasks(
    parent: Bundle,
    out: str | os.PathLike[str],
    tasks: Sequence[TaskSpec],
    adapters: Mapping[str, LoraAdapter] | None = None,
    *,
    lora_mode: Literal["separate", "merged"] = "separate",
    stage: Stage = "distill",
    overwrite: bool = False,
) -> Bundle:
    """Write a child bundle that serves ``tasks``, each with its LoRA adapter if given.

    See :func:`tinyllm.api.add_tasks` for the arguments.
    """
    from tinyllm.tasks import task_from_dict
    from tinyllm.tasktable import FILE as TASK_TABLE
    from tinyllm.tasktable import write_task_table

    check_output_path(parent, out)
    adapters = dict(adapters or {})
    task_dicts = {**parent.manifest.tasks, **{t.name: t.to_dict() for t in tasks}}
    unknown = sorted(set(adapters) - set(task_dicts))
    if unknown:
        raise ConfigError(f"adapter {unknown[0]!r} names no task; add its task spec too")
    for name, adapter in adapters.items():
        adapter.check(parent.config, f"adapter {name!r}")
    entries = dict(parent.manifest.adapters)
    tables = {f"{e.path}/{TASK_TABLE}" for e in parent.manifest.engines.values()}
    with BundleWriter(out, overwrite=overwrite) as writer:
        for file in parent.manifest.files:
            replaced = any(file == entries[n].file for n in adapters if n in entries)
            if not replaced and file not in tables:  # the engines' task tables are rewritten
                writer.copy_file(parent.path / file, file)
        for name, adapter in adapters.items():
            file = f"adapters/{name}.safetensors"
            writer.save_tensors(file, adapter.tensors)
            entries[name] = adapter.entry(file)
        manifest = child_manifest(
            parent,
            stage,
            name=bundle_name(out),
            tasks=task_dicts,
            adapters=entries,
            lora_mode=lora_mode if entries else parent.manifest.lora_mode,
        )
        specs = {n: task_from_dict(d, f"task {n!r}") for n, d in task_dicts.items()}
        for engine in parent.manifest.engines.values():  # the engines serve the new tasks
            write_task_table(writer.staging / engine.path, specs, manifest, parent.tokenizer_dir)
        return writer.commit(manifest)
