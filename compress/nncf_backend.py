"""NNCF weight compression as a second quantization backend, stored in our packed format.

``nncf.compress_weights`` runs on the torch model (its torch backend, CPU) with
``ratio=1.0`` so every decoder linear gets the primary precision: int4 per group of
``group_size`` (asymmetric ``INT4_ASYM`` or symmetric ``INT4_SYM``), or int8 per output
channel (``INT8_ASYM``/``INT8_SYM``; the channel's scale is repeated over our blocks,
which represents it exactly). ``awq=True`` adds AWQ and scale estimation (int4 only,
with calibration data). NNCF leaves each weight as packed codes plus a decompressor
module holding scale and zero point; those are read back here and repacked into the
MatMulNBits layout, so both backends are exported and evaluated the same way.

AWQ on a Llama/Qwen2 MLP moves a per-channel scale ``s`` between ``up_proj`` (its output
rows divided by ``s``) and ``down_proj`` (its input columns multiplied by ``s``): the
quantized base computes the same function, but a LoRA adapter kept separate no longer
matches it. :func:`awq_scales` recovers ``s`` from the float and the compressed weights
and :func:`rescale_adapter` moves each adapter into the scaled space, so separate
adapters keep working over an AWQ base (``tinyllm.compress.quantize`` does both).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tinyllm.adapters import LoraAdapter, module_name
from tinyllm.compress.gptq import QuantResult, check_quant_args, pack_result
from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError, missing_dependency

HOOK_PREFIX = "__nncf_hooks.post_hooks."


def _nncf() -> Any:
    try:
        import nncf
    except ImportError as e:
        raise missing_dependency("nncf", "compress", "The NNCF quantization backend") from e
    return nncf


def nncf_quantize(
    model: Any,
    config: ModelConfig,
    bits: int,
    group_size: int,
    symmetric: bool,
    awq: bool,
    data: list[dict[str, torch.Tensor]],
) -> dict[str, QuantResult]:
    """Compress ``model``'s decoder linears with NNCF and return them in our packing.

    The model is modified in place (its linears hold NNCF's codes afterwards).

    Args:
        model: a float transformers Llama/Qwen2 model.
        config: its config.
        bits: 4 or 8.
        group_size: int4 group size (int8 is per channel in NNCF).
        symmetric: INT*_SYM instead of INT*_ASYM.
        awq: AWQ + scale estimation (int4 with calibration ``data``).
        data: calibration inputs, ``{"input_ids": [1, S], "attention_mask": [1, S]}`` each
            (at least one: NNCF traces the model with it).
    """
    nncf = _nncf()
    check_quant_args(bits, group_size, config.hidden_size)
    if awq and bits != 4:
        raise ConfigError("NNCF's AWQ/scale estimation works on int4 only; drop -awq for int8")
    modes = nncf.CompressWeightsMode
    mode = {
        (4, False): modes.INT4_ASYM,
        (4, True): modes.INT4_SYM,
        (8, False): modes.INT8_ASYM,
        (8, True): modes.INT8_SYM,
    }[(bits, symmetric)]
    if not data:
        raise ConfigError("NNCF's torch backend traces the model: give at least one input")
    # The torch backend always needs a dataset (to trace the model); only AWQ and scale
    # estimation use its statistics.
    kwargs: dict[str, Any] = {"mode": mode, "dataset": nncf.Dataset(data)}
    if bits == 4:
        kwargs.update(ratio=1.0, group_size=group_size, all_layers=False)
    if awq:
        kwargs.update(awq=True, scale_estimation=True, subset_size=len(data))
    nncf.compress_weights(model, **kwargs)
    return read_compressed(model, bits, group_size, symmetric)


def read_compressed(
    model: Any, bits: int, group_size: int, symmetric: bool
) -> dict[str, QuantResult]:
    """Our packing of every compressed ``*_proj`` weight of an NNCF-compressed model."""
    from nncf.torch.quantization.layers import BaseWeightsDecompressor

    state = model.state_dict()
    out: dict[str, QuantResult] = {}
    for name, module in model.named_modules():
        if not isinstance(module, BaseWeightsDecompressor) or not name.startswith(HOOK_PREFIX):
            continue
        weight = name.removeprefix(HOOK_PREFIX).rsplit("__", 1)[0].replace(":", ".")
        if not weight.endswith("_proj.weight") or weight.startswith("lm_head"):
            continue
        codes, scale, zero = _unpack(module, state[weight], bits)
        out[weight] = _to_packed(codes, scale, zero, bits, group_size, symmetric)
    return out


def _unpack(
    module: Any, packed: torch.Tensor, bits: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(codes, scale, zero point or None) of one decompressor, in NNCF's shapes."""
    from nncf.torch.quantization.quantize_functions import unpack_int4, unpack_uint4

    scale = module._scale.float()
    zp = getattr(module, "_zero_point", None)
    if bits == 4:
        if zp is not None:
            codes = unpack_uint4(packed).reshape(module.compressed_weight_shape)
            zero = unpack_uint4(zp).reshape(module.zero_point_shape)
            return codes.float(), scale, zero.float()
        return unpack_int4(packed).reshape(module.compressed_weight_shape).float(), scale, None
    return packed.float(), scale, None if zp is None else zp.float()


def _to_packed(
    codes: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor | None,
    bits: int,
    group_size: int,
    symmetric: bool,
) -> QuantResult:
    """NNCF's grouping (int4: [N, K/G, G] with [N, K/G, 1] scales; int8: [N, K] per
    channel) into our [N, K] codes with per-group scales/zero points."""
    n = codes.shape[0]
    codes = codes.reshape(n, -1)
    k = codes.shape[1]
    blocks = k // group_size
    scales = scale.reshape(n, -1)
    zeros = None if zero is None else zero.reshape(n, -1)
    if scales.shape[1] == 1:  # per channel: the same scale for every block
        scales = scales.expand(n, blocks).contiguous()
        zeros = None if zeros is None else zeros.expand(n, blocks).contiguous()
    if (zeros is None) != symmetric:
        raise ConfigError("NNCF returned a zero point where none was expected (or none)")
    if zeros is None:  # NNCF's signed codes: shift onto our unsigned ones, zero 2^(bits-1)
        mid = float(2 ** (bits - 1))
        codes, zeros = codes + mid, torch.full((n, blocks), mid)
    s = scales.repeat_interleave(group_size, dim=1)
    z = zeros.repeat_interleave(group_size, dim=1)
    packed = pack_result(codes, scales, zeros, bits, group_size, symmetric)
    return QuantResult(packed, (codes - z) * s)


def awq_scales(
    before: Mapping[str, torch.Tensor], results: Mapping[str, QuantResult], config: ModelConfig
) -> dict[int, torch.Tensor]:
    """Per layer, the scale ``s`` [intermediate] that AWQ moved from ``up_proj`` to ``down_proj``.

    Least squares per channel on both sides (``down_proj`` column ``≈ s·W[:, i]``,
    ``up_proj`` row ``≈ W[i]/s``), combined by their geometric mean; the quantization
    noise averages out over the channel's ``hidden_size`` weights. Where AWQ left a
    layer alone the estimate is 1 up to that noise.

    Args:
        before: the float weights NNCF started from.
        results: NNCF's compressed weights in our packing (:func:`nncf_quantize`).
        config: the model config.
    """
    out = {}
    for layer in range(config.num_hidden_layers):
        down, up = (f"{module_name(layer, k)}.weight" for k in ("down_proj", "up_proj"))
        wd, qd = before[down].float(), results[down].dequantized.float()
        wu, qu = before[up].float(), results[up].dequantized.float()
        s_down = (qd * wd).sum(0) / (wd * wd).sum(0).clamp_min(1e-12)
        inv_up = (qu * wu).sum(1) / (wu * wu).sum(1).clamp_min(1e-12)
        ratio = s_down / inv_up
        if bool((ratio <= 0).any()):
            raise ConfigError(f"layer {layer}: NNCF's AWQ scales could not be recovered")
        out[layer] = ratio.sqrt()
    return out


def rescale_adapter(adapter: LoraAdapter, scales: Mapping[int, torch.Tensor]) -> LoraAdapter:
    """``adapter`` moved into AWQ's scaled space: ``up_proj``'s B rows divided by ``s``,
    ``down_proj``'s A columns multiplied by ``s`` (other projections unchanged)."""
    tensors = dict(adapter.tensors)
    for layer, s in scales.items():
        scale = s.numpy().astype(np.float32)
        if "up_proj" in adapter.targets:
            key = f"{module_name(layer, 'up_proj')}.lora_B.weight"
            tensors[key] = (tensors[key] / scale[:, None]).astype(tensors[key].dtype)
        if "down_proj" in adapter.targets:
            key = f"{module_name(layer, 'down_proj')}.lora_A.weight"
            tensors[key] = (tensors[key] * scale[None, :]).astype(tensors[key].dtype)
    return dataclasses.replace(adapter, tensors=tensors)


def unscale_results(
    results: Mapping[str, QuantResult], scales: Mapping[int, torch.Tensor]
) -> dict[str, QuantResult]:
    """The compressed weights mapped back to the float model's space (``up_proj`` rows
    times ``s``, ``down_proj`` columns divided by ``s``): the same MLP function, so the
    output error ``||(Q - W) X||²`` against the float weights applies to AWQ too."""
    out = dict(results)
    for layer, s in scales.items():
        up, down = (f"{module_name(layer, k)}.weight" for k in ("up_proj", "down_proj"))
        out[up] = QuantResult(results[up].packed, results[up].dequantized * s[:, None])
        out[down] = QuantResult(results[down].packed, results[down].dequantized / s[None, :])
    return out
