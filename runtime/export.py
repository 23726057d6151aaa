"""Export: build an engine folder (model.onnx + external data + engine.json) from a bundle."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tinyllm.bundle import Bundle
from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError
from tinyllm.quantformat import PackedWeight, quantize_rtn, read_weights
from tinyllm.runtime.builder import BuildOptions, build_decoder
from tinyllm.runtime.enginefile import stamp
from tinyllm.runtime.engineinfo import EngineInfo
from tinyllm.runtime.exportoptions import ExportOptions as ExportOptions
from tinyllm.runtime.tensorrt import CONTEXT_MODEL, build_engine, fix_logits_index, merged_weights

if TYPE_CHECKING:
    import onnx

MODEL_FILE = "model.onnx"


EMBEDDING = "model.embed_tokens.weight"


def packed_weights(
    weights: dict[str, np.ndarray], tied: bool, options: ExportOptions
) -> dict[str, PackedWeight]:
    """RTN-quantize every linear weight of the decoder, the lm_head and (for the
    ``ort`` flavour's quantized lookup) the embedding table."""
    bits = 4 if options.quant == "int4" else 8
    names = [n for n in weights if n.endswith("_proj.weight")]
    names.append(EMBEDDING if tied else "lm_head.weight")
    if not tied and quantized_lookup(options):
        names.append(EMBEDDING)
    return {n: quantize_rtn(weights[n], bits, options.block_size, options.symmetric) for n in names}


def quantized_lookup(options: ExportOptions) -> bool:
    """Whether the engine's token lookup reads int blocks (see BuildOptions): asked for,
    on an int engine of ``onnx-cpu`` (the fp32 table is 57% of SmolLM2's int4 file)."""
    return options.quantized_embedding and options.target == "onnx-cpu" and bool(options.quant)


def dequantized(
    weights: dict[str, np.ndarray],
    packed: dict[str, PackedWeight],
    *,
    tied: bool,
    lookup: bool,
) -> dict[str, np.ndarray]:
    """The weights an int engine actually computes with (for the verification reference).

    A tied embedding's lm_head computes with the quantized copy: the result then has an
    untied ``lm_head.weight``. The token lookup reads the quantized table where the
    engine has one (``lookup``, see :func:`quantized_lookup`), else the float one.
    """
    out = dict(weights)
    for name, p in packed.items():
        if name != EMBEDDING:
            out[name] = p.dequantize()
            continue
        if tied:
            out["lm_head.weight"] = p.dequantize()
        if lookup:
            out[EMBEDDING] = p.dequantize()
    return out


def write_engine(
    bundle: Bundle, folder: Path, options: ExportOptions
) -> tuple[EngineInfo, dict[str, np.ndarray]]:
    """Build and save the engine into ``folder``.

    Returns its info and the weights it computes with (dequantized where quantized).
    """
    flavour, precision = options.resolved()
    config = bundle.config
    max_seq = min(
        options.max_seq_len or config.max_position_embeddings, config.max_position_embeddings
    )
    packed, weights = engine_weights(bundle, options)
    build = BuildOptions(
        flavour=flavour,  # type: ignore[arg-type]
        precision=precision,  # type: ignore[arg-type]
        max_seq_len=max_seq,
        packed=packed,
        lora_slots=options.lora_slots,
        lora_rank=options.lora_rank,
        lora_targets=options.lora_targets,
        accuracy_level=options.accuracy_level,
        quantized_embedding=quantized_lookup(options),
        greedy_ids=options.greedy_ids,
    )
    model = build_decoder(config, weights, build)
    info = EngineInfo(
        target=options.target,
        flavour=flavour,
        precision=precision,
        float_dtype=str(build.float_dtype),
        max_seq_len=max_seq,
        model=MODEL_FILE,
        block_size=options.block_size if options.quant else 0,
        lora_slots=options.lora_slots,
        lora_rank=options.lora_rank,
        lora_targets=tuple(options.lora_targets) if options.lora_slots else (),
        merged_adapter=options.merge_adapter,
        greedy_ids=options.greedy_ids,
    )
    save_engine(folder, model, info, bundle.config, options)
    lookup = build.quantized_embedding and EMBEDDING in packed
    return info, dequantized(weights, packed, tied=config.tie_word_embeddings, lookup=lookup)


def engine_weights(
    bundle: Bundle, options: ExportOptions
) -> tuple[dict[str, PackedWeight], dict[str, np.ndarray]]:
    """The packed (quantized) weights the engine stores and the float weights it is built
    from: a quantized bundle's packed weights as they are, else RTN-quantized here when
    ``options.quant`` asks; the adapter folded in first with ``options.merge_adapter``."""
    packed, weights = read_weights(bundle)
    spec = bundle.quant_spec()
    if spec is not None:
        # A quantized bundle's packed weights go into the engine as they are.
        if (options.quant, options.block_size) != (f"int{spec.bits}", spec.group_size):
            raise ConfigError(
                f"{bundle.path} is already quantized (int{spec.bits}, group {spec.group_size}); "
                "export it without --quant/--block-size"
            )
        weights = {**weights, **{n: p.dequantize() for n, p in packed.items()}}
    if options.merge_adapter is not None:
        if spec is not None:
            raise ConfigError(
                f"{bundle.path} is quantized: merge the adapter before quantizing "
                "(tinyllm compress --lora merged), then export it"
            )
        weights = merged_weights(bundle, weights, options.merge_adapter)
    if spec is None and options.quant:
        packed = packed_weights(weights, bundle.config.tie_word_embeddings, options)
    return packed, weights


def save_engine(
    folder: Path,
    model: onnx.ModelProto,
    info: EngineInfo,
    config: ModelConfig,
    options: ExportOptions,
) -> None:
    """Write the graph (``model``, an onnx ModelProto) with its external data and
    engine.json into ``folder``; build the TensorRT engine for ``--target tensorrt``."""
    import onnx

    # What load checks engine.json against (beside the graph's inputs).
    onnx.helper.set_model_props(model, stamp(info))
    if options.target == "tensorrt":
        fix_logits_index(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        model,
        str(folder / MODEL_FILE),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{MODEL_FILE}.data",
        size_threshold=1024,
    )
    write_info(folder, info, {})
    if options.target == "tensorrt":
        build_engine(
            folder,
            MODEL_FILE,
            config,
            precision=info.precision,
            max_batch=options.max_batch,
            max_seq_len=info.max_seq_len,
            lora_slots=options.lora_slots,
        )
        copy_stamps(folder / MODEL_FILE, folder / CONTEXT_MODEL)


def copy_stamps(source: Path, context_model: Path) -> None:
    """Copy the graph's ``tinyllm.*`` metadata (what load checks engine.json against) into
    the EPContext model the EP wrote, which has its own metadata."""
    import onnx

    stamps = {
        p.key: p.value
        for p in onnx.load(str(source), load_external_data=False).metadata_props
        if p.key.startswith("tinyllm.")
    }
    ctx = onnx.load(str(context_model), load_external_data=False)
    onnx.helper.set_model_props(ctx, {p.key: p.value for p in ctx.metadata_props} | stamps)
    onnx.save(ctx, str(context_model))


def write_info(folder: Path, info: EngineInfo, verification: dict[str, object]) -> None:
    """Write engine.json (the engine's description plus its verification table).

    ``merged_adapter`` and ``greedy_ids`` are written only when set, so engines without
    them read as before (C++ runtimes older than these keys reject keys they do not know)."""
    data = {**asdict(info), "lora_targets": list(info.lora_targets)}
    if info.merged_adapter is None:
        del data["merged_adapter"]
    if not info.greedy_ids:
        del data["greedy_ids"]
    (folder / "engine.json").write_text(json.dumps(data, indent=2) + "\n")
    if verification:
        (folder / "verification.json").write_text(json.dumps(verification, indent=2) + "\n")
