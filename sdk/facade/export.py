"""``tinyllm export``: build a verified engine into a child bundle (the runtime's export side)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tinyllm.errors import ConfigError
from tinyllm.runtime.exportoptions import ExportOptions

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle, BundleWriter
    from tinyllm.manifest import EngineEntry
    from tinyllm.runtime.gptqlayout import GPTQFormat
    from tinyllm.runtime.hfexport import HFExport
    from tinyllm.runtime.verify import Verification

PathLike = str | os.PathLike[str]


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
    merge_adapter: str | None,
    greedy_ids: bool = False,
) -> ExportOptions:
    """The runtime's export options for ``parent``, checked against its model config.

    A quantized bundle exports its own packed weights unless ``quant`` asks otherwise.
    """
    if merge_adapter is not None and lora_slots is None:
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
        greedy_ids=greedy_ids,
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
    specs, merged = parent.task_specs(), options.merge_adapter
    write_task_table(folder, specs, parent.manifest, parent.tokenizer_dir, merged)
    details: dict[str, object] = {"flavour": info.flavour, "max_seq_len": info.max_seq_len}
    if merged is not None:
        details["merged_adapter"] = merged  # the one task this engine serves
    if info.greedy_ids:
        details["greedy_ids"] = True
    entry = EngineEntry(
        target=options.target, path=f"engines/{name}", precision=info.precision, info=details
    )
    return entry, verification


def export(
    bundle: PathLike,
    target: str = ExportOptions.target,
    out: PathLike | None = None,
    *,
    quant: str | None = ExportOptions.quant,
    precision: str | None = ExportOptions.precision,
    block_size: int = ExportOptions.block_size,
    max_seq_len: int | None = ExportOptions.max_seq_len,
    lora_slots: int | None = None,
    lora_rank: int | None = None,
    accuracy_level: int = ExportOptions.accuracy_level,
    overwrite: bool = False,
    lora_spare: int = 2,
    quantized_embedding: bool = False,
    max_batch: int = ExportOptions.max_batch,
    merge_adapter: str | None = ExportOptions.merge_adapter,
    greedy_ids: bool = ExportOptions.greedy_ids,
) -> tuple[Bundle, Verification]:
    """Export an inference engine into a new bundle (``out``, default: replace ``bundle``).

    The engine is always verified against the torch model (prefill and 16 decode steps on
    sample prompts); a failed verification raises and leaves no engine behind.

    Args:
        bundle: the bundle to export.
        target: ``onnx-cpu`` (contrib ops, fp32/int8/int4), ``onnx-cuda`` (fp16) or
            ``onnx-standard`` (standard ops only, fp32/fp16: TensorRT and others), or
            ``tensorrt`` (a TensorRT engine built through ONNX Runtime's TensorRT EP on
            this machine's GPU; docs/gpu.md).
        out: where to write the new bundle (may be the same path: replaced atomically).
        quant: ``int4`` or ``int8``: round-to-nearest weight quantization at export.
        precision: ``fp32`` or ``fp16`` for float engines (default per target).
        block_size: quantization block along the input dimension.
        max_seq_len: the longest context the engine supports (default: the model's).
        lora_slots: adapter slots of the multi-LoRA inputs (0: a plain base model).
            Default: for a bundle with separate adapters, one per adapter, plus slot 0
            (the base model), plus ``lora_spare`` for tasks added while serving; else 0.
        lora_rank: rank of those slots (default: the largest adapter rank).
        accuracy_level: MatMulNBits compute mode for int engines: 4 (int8 activations,
            fastest on CPU) or 0 (float activations, exact).
        overwrite: replace an existing bundle at ``out`` (writing onto ``bundle`` itself
            always replaces it).
        lora_spare: free adapter slots for tasks added while serving (default slots only).
        quantized_embedding: ``onnx-cpu`` with ``quant``: the token lookup reads int
            blocks (the tied lm_head's own) instead of a float table: SmolLM2's int4
            engine file 198 -> 88 MB, RSS about the same (the float table is memory-mapped
            and only looked-up rows become resident); greedy tokens change (docs/runtime.md).
        max_batch: ``tensorrt``: the largest batch of the engine's optimization profile.
        merge_adapter: a task whose adapter is folded into the base weights (with
            ``lora_slots=0``): the engine (named ``TARGET-PRECISION-TASK``) serves that
            task only; the fallback when TensorRT cannot take the multi-LoRA graph.
        greedy_ids: the graph also outputs each row's argmax; steps whose rows all decode
            greedily with no constraint read those ids instead of the logits (on CUDA the
            logits then stay on the GPU). Verification checks the ids against the argmax
            of the engine's own logits (docs/runtime.md).
    """
    from tinyllm.bundle import Bundle

    parent = Bundle.open(bundle)
    options = export_options(
        parent,
        target=target,
        quant=quant,
        precision=precision,
        block_size=block_size,
        max_seq_len=max_seq_len,
        lora_slots=lora_slots,
        lora_rank=lora_rank,
        accuracy_level=accuracy_level,
        lora_spare=lora_spare,
        quantized_embedding=quantized_embedding,
        max_batch=max_batch,
        merge_adapter=merge_adapter,
        greedy_ids=greedy_ids,
    )
    return export_bundle(parent, out, options, overwrite=overwrite)


def export_hf(
    bundle: PathLike, out: PathLike, *, gptq_format: GPTQFormat = "gptq", overwrite: bool = False
) -> HFExport:
    """Export a bundle as a Hugging Face folder plus a PEFT adapter folder per task, for
    vLLM, TGI and transformers + peft (docs/deploy.md). A quantized bundle's packed
    weights go out in the GPTQ checkpoint layout, unchanged.

    Args:
        bundle: the bundle to export (float, or quantized int4/int8).
        out: the folder to write (not a bundle).
        gptq_format: ``gptq`` (v1, read by every GPTQ loader) or ``gptq_v2``.
        overwrite: replace an existing folder at ``out``.
    """
    from tinyllm.bundle import Bundle
    from tinyllm.runtime.hfexport import export_hf as write_hf

    parent = Bundle.open(bundle)
    return write_hf(parent, Path(out), gptq_format=gptq_format, overwrite=overwrite)
