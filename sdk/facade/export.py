"""``tinyllm export``: build a verified engine into a child bundle (the runtime's export side)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tinyllm.errors import ConfigError

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle, BundleWriter
    from tinyllm.manifest import EngineEntry
    from tinyllm.runtime.exportoptions import ExportOptions
    from tinyllm.runtime.verify import Verification


def lora_defaults(
    bundle: Bundle, slots: int | None, rank: int | None, spare: int
) -> tuple[int, int]:
    """Multi-LoRA slots and rank of an export: what was asked, else what the adapters need."""
    adapters = bundle.manifest.adapters if bundle.manifest.lora_mode != "merged" else {}
    if spare < 0:
        raise ConfigError(f"lora_spare must be >= 0, got {spare}")
    if slots is None:
        slots = len(adapters) + 1 + spare if adapters else 0
    if rank is None:
        rank = max((a.rank for a in adapters.values()), default=8 if slots else 0)
    return slots, rank


def export_options(
    parent: Bundle,
    *,
    target: str,
    quant: str | None,
    precision: str | None,
    block_size: int,
    max_seq_len: int | None,
    lora_slots: int | None,
    lora_rank: int | None,
    accuracy_level: int,
    lora_spare: int,
    quantized_embedding: bool = False,
    max_batch: int,
    merge_adapter: bool,
) -> ExportOptions:
    """The runtime's export options for ``parent``, checked against its model config.

    A quantized bundle exports its own packed weights unless ``quant`` asks otherwise.
    """
    from tinyllm.runtime.exportoptions import ExportOptions

    if merge_adapter and lora_slots is None:
        lora_slots = 0  # a merged adapter needs no slots
    slots, rank = lora_defaults(parent, lora_slots, lora_rank, lora_spare)
    spec = parent.quant_spec()
    if spec is not None and quant is None:
        quant, block_size = f"int{spec.bits}", spec.group_size
    options = ExportOptions(
        target=target,
        precision=precision,
        quant=quant,
        block_size=block_size,
        max_seq_len=max_seq_len,
        lora_slots=slots,
        lora_rank=rank,
        accuracy_level=accuracy_level,
        quantized_embedding=quantized_embedding,
        max_batch=max_batch,
        merge_adapter=merge_adapter,
    )
    options.check(parent.config)
    return options


def export_bundle(
    parent: Bundle,
    out: str | os.PathLike[str] | None,
    options: ExportOptions,
    *,
    overwrite: bool,
) -> tuple[Bundle, Verification]:
    """Write ``parent`` plus a verified engine to ``out`` (None: replace ``parent``).

    A failed verification raises and leaves nothing behind.
    """
    from tinyllm.bundle import BundleWriter
    from tinyllm.lineage import child_manifest

    name = options.engine_name()
    target_path = Path(out) if out is not None else parent.path
    same = target_path.resolve() == parent.path.resolve()
    with BundleWriter(target_path, overwrite=same or overwrite) as writer:
        for file in parent.manifest.files:
            if not file.startswith(f"engines/{name}/"):
                writer.copy_file(parent.path / file, file)
        entry, verification = _write_verified_engine(parent, writer, options)
        engines = {**parent.manifest.engines, name: entry}
        return writer.commit(child_manifest(parent, "export", engines=engines)), verification


def _write_verified_engine(
    parent: Bundle, writer: BundleWriter, options: ExportOptions
) -> tuple[EngineEntry, Verification]:
    """Build the engine folder in the writer's staging area, verify it, write its tables."""
    from tinyllm.manifest import EngineEntry
    from tinyllm.runtime.export import write_engine, write_info
    from tinyllm.runtime.verify import VerificationError, verify_export
    from tinyllm.tasktable import write_task_table

    name = options.engine_name()
    folder = writer.staging / "engines" / name
    info, weights = write_engine(parent, folder, options)
    verification = verify_export(parent, folder, info, weights, options.accuracy_level)
    if not verification.passed:
        raise VerificationError(
            f"the {name} engine does not reproduce the model; nothing was written.\n"
            + verification.format()
        )
    write_info(folder, info, verification.to_dict())
    write_task_table(folder, parent.task_specs(), parent.manifest, parent.tokenizer_dir)
    entry = EngineEntry(
        target=options.target,
        path=f"engines/{name}",
        precision=info.precision,
        info={"flavour": info.flavour, "max_seq_len": info.max_seq_len},
    )
    return entry, verification
