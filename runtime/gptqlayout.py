"""The GPTQ checkpoint layout that transformers (through GPT-QModel), vLLM and TGI load.

A quantized bundle's weights are in MatMulNBits layout (:mod:`tinyllm.quantformat`): per
weight ``W [N, K]`` integer codes ``q``, scales ``s`` and zero points ``z`` per group of
``group_size`` columns, ``W[n, k] = (q[n, k] - z[n, g]) * s[n, g]``, ``g = k // group_size``.
The GPTQ layout stores the same numbers transposed and packed into int32 words, low bits
first (``32 / bits`` values a word):

- ``qweight [K * bits / 32, N]`` int32: word ``[r, n]`` holds ``q[n, k]`` for the
  ``32 / bits`` consecutive ``k`` from ``r * 32 / bits``, the first in the lowest bits;
- ``qzeros [G, N * bits / 32]`` int32: word ``[g, c]`` holds the zero points of the
  ``32 / bits`` consecutive outputs from ``c * 32 / bits`` in group ``g``, alike;
- ``scales [G, N]``: kept float32 here, bit for bit the bundle's (loaders cast them to
  the dtype they serve in);
- ``g_idx [K]`` int32: the group of each input column, ``k // group_size`` (tinyllm's
  GPTQ keeps static groups even with act_order, so ``desc_act`` is always false).

Zero points: ``checkpoint_format`` ``gptq`` (the original "v1" format, what every loader
reads) stores ``z - 1`` in each field, and loaders add the 1 back per field; a zero
point of 0 has no v1 encoding (its field would hold -1). ``gptq_v2`` stores ``z`` as it
is; GPT-QModel and vLLM read it, TGI does not. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tinyllm.errors import ConfigError, TinyLLMError
from tinyllm.quantformat import PackedWeight, QuantSpec

GPTQFormat = Literal["gptq", "gptq_v2"]
GPTQ_FORMATS: tuple[str, ...] = ("gptq", "gptq_v2")
SUFFIXES = ("qweight", "qzeros", "scales", "g_idx")


class GPTQLayoutError(TinyLLMError):
    """Packed weights that the GPTQ layout cannot hold, or that do not unpack to the bundle's."""


def words_per_int32(bits: int) -> int:
    """How many ``bits``-bit fields an int32 word holds (8 for int4, 4 for int8)."""
    if bits not in (4, 8):
        raise ConfigError(f"the GPTQ export packs 4- or 8-bit weights, got {bits} bits")
    return 32 // bits


def pack_int32(values: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Pack unsigned ``bits``-bit fields along ``axis`` into int32 words, low bits first.

    Args:
        values: integers in [0, 2^bits) [R, C]; the packed axis must divide by 32 / bits.
        axis: 0 packs rows (qweight: along K), 1 packs columns (qzeros: along N).
    """
    per = words_per_int32(bits)
    v = np.moveaxis(np.asarray(values, np.uint32), axis, -1)  # [..., M]
    if v.shape[-1] % per:
        raise GPTQLayoutError(f"{v.shape[-1]} fields do not fill whole int32 words of {per}")
    fields = v.reshape(*v.shape[:-1], -1, per)  # [..., M / per, per]
    shifts = np.arange(per, dtype=np.uint32) * np.uint32(bits)
    words = np.bitwise_or.reduce(fields << shifts, axis=-1)  # [..., M / per]
    # Contiguous: safetensors.numpy writes a strided view's buffer in memory order, silently.
    return np.ascontiguousarray(np.moveaxis(words, -1, axis)).view(np.int32)


def unpack_int32(words: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Inverse of :func:`pack_int32`: int32 words -> unsigned fields (int64) along ``axis``."""
    per = words_per_int32(bits)
    w = np.moveaxis(np.asarray(words).view(np.uint32), axis, -1)[..., None]  # [..., M/per, 1]
    shifts = np.arange(per, dtype=np.uint32) * np.uint32(bits)
    fields = (w >> shifts) & np.uint32(2**bits - 1)  # [..., M / per, per]
    return np.moveaxis(fields.reshape(*fields.shape[:-2], -1).astype(np.int64), -1, axis)


@dataclass(frozen=True)
class Unpacked:
    """One weight's numbers in tinyllm's orientation: codes [N, K], scales and zeros [N, G]."""

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray


def bundle_numbers(p: PackedWeight) -> Unpacked:
    """The integer codes, scales and zero points a bundle's packed weight holds."""
    codes = p.codes()[:, : p.in_features].astype(np.int64)
    return Unpacked(codes, p.scales.astype(np.float32), p.zeros().astype(np.int64))


def to_gptq(name: str, p: PackedWeight, fmt: GPTQFormat) -> dict[str, np.ndarray]:
    """The GPTQ tensors of one weight (``name`` without ``.weight``: ``PREFIX.qweight``...)."""
    if fmt not in GPTQ_FORMATS:
        raise ConfigError(f"unknown GPTQ checkpoint format {fmt!r}; use one of {GPTQ_FORMATS}")
    per = words_per_int32(p.bits)
    n, k = p.out_features, p.in_features
    if k % per or n % per:
        raise GPTQLayoutError(
            f"{name}: a {n}x{k} weight does not fit the GPTQ layout, which packs {per} "
            f"{p.bits}-bit values an int32 along both dimensions (both must divide by {per})"
        )
    numbers = bundle_numbers(p)
    zeros = numbers.zeros
    if fmt == "gptq":
        if (zeros < 1).any():
            count = int((zeros < 1).sum())
            raise GPTQLayoutError(
                f"{name}: {count} groups have zero point 0, which checkpoint_format 'gptq' "
                "(v1, zero points stored minus 1) cannot encode; export with "
                "--gptq-format gptq_v2 (read by GPT-QModel and vLLM, not TGI) or "
                "compress with --symmetric"
            )
        zeros = zeros - 1
    return {
        f"{name}.qweight": pack_int32(numbers.codes.T, p.bits, axis=0),  # [K / per, N]
        f"{name}.qzeros": pack_int32(zeros.T, p.bits, axis=1),  # [G, N / per]
        f"{name}.scales": np.ascontiguousarray(numbers.scales.T),  # [G, N]
        f"{name}.g_idx": (np.arange(k) // p.block_size).astype(np.int32),  # [K]
    }


def from_gptq(
    tensors: dict[str, np.ndarray], name: str, bits: int, group_size: int, fmt: GPTQFormat
) -> Unpacked:
    """Read one weight back from GPTQ tensors, as a loader does (zero point +1 in v1)."""
    codes = unpack_int32(tensors[f"{name}.qweight"], bits, axis=0).T  # [N, K]
    zeros = unpack_int32(tensors[f"{name}.qzeros"], bits, axis=1).T  # [N, G]
    if fmt == "gptq":
        zeros = zeros + 1
    g_idx = tensors[f"{name}.g_idx"]
    if not np.array_equal(g_idx, np.arange(codes.shape[1]) // group_size):
        raise GPTQLayoutError(f"{name}.g_idx is not the static group of each column")
    return Unpacked(codes, tensors[f"{name}.scales"].T, zeros)


def check_same(name: str, want: Unpacked, got: Unpacked) -> None:
    """Raise unless codes, zero points and scales (bit patterns) are identical."""
    for field, a, b in (
        ("codes", want.codes, got.codes),
        ("zero points", want.zeros, got.zeros),
        ("scales", want.scales.view(np.uint32), np.asarray(got.scales, np.float32).view(np.uint32)),
    ):
        if a.shape != b.shape or not np.array_equal(a, b):
            raise GPTQLayoutError(
                f"{name}: the GPTQ tensors do not unpack to the bundle's {field}; the "
                "export is wrong and was not written (please report this)"
            )


def quantization_config(spec: QuantSpec, fmt: GPTQFormat) -> dict[str, object]:
    """The ``quantization_config`` of config.json for a bundle quantized as ``spec``."""
    return {
        "quant_method": "gptq",
        "bits": spec.bits,
        "group_size": spec.group_size,
        "desc_act": False,
        "sym": spec.symmetric,
        "lm_head": False,
        "checkpoint_format": fmt,
        "pack_dtype": "int32",
        "true_sequential": True,
        "static_groups": spec.act_order,
        "damp_percent": float((spec.calibration or {}).get("damp", 0.01)),  # type: ignore[arg-type]
        "meta": {"quantizer": [f"tinyllm:{spec.method}"]},
    }
