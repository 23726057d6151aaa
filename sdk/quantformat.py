"""The packed weight format of quantized bundles: exactly what ONNX Runtime's MatMulNBits reads.

It lives in the core because two stages share it: ``tinyllm.compress`` writes it (RTN,
GPTQ, ...), ``tinyllm.runtime`` exports it without re-quantizing. Pure numpy.

For a weight ``W [N, K]`` (out, in) quantized in blocks of ``block_size`` along K:
``qweight [N, k_blocks, block_size * bits / 8]`` uint8 (4-bit: two values a byte, the
even element in the low nibble), ``scales [N, k_blocks]``, and ``zero_points`` uint8
``[N, ceil(k_blocks * bits / 8)]`` (4-bit: two a byte, low nibble first) or None for
the symmetric midpoint ``2^(bits-1)``. ``W[n, k] = (q[n, k] - zp[n, block]) * scale[n, block]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tinyllm.errors import ConfigError

if TYPE_CHECKING:
    from tinyllm.config import ModelConfig

BITS = (4, 8)


class WeightsSource(Protocol):
    """What :func:`read_weights` reads of a bundle (a protocol: this module imports no bundle)."""

    @property
    def weights_path(self) -> Path:
        """The bundle's weights.safetensors."""
        ...

    @property
    def config(self) -> ModelConfig:
        """The model config (the packed weights' shapes)."""
        ...

    def quant_spec(self) -> QuantSpec | None:
        """The quantization spec, or None for a float bundle."""
        ...


@dataclass(frozen=True)
class PackedWeight:
    """A quantized weight in MatMulNBits layout (see the module docstring)."""

    qweight: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray | None
    bits: int
    block_size: int
    in_features: int

    @property
    def out_features(self) -> int:
        """N, the number of output features (rows of W)."""
        return int(self.qweight.shape[0])

    @property
    def k_blocks(self) -> int:
        """Blocks per row."""
        return int(self.qweight.shape[1])

    def codes(self) -> np.ndarray:
        """Unpacked integer codes [N, k_blocks * block_size] (uint8)."""
        if self.bits == 8:
            return self.qweight.reshape(self.out_features, -1)
        low, high = self.qweight & 0x0F, self.qweight >> 4
        return np.stack([low, high], axis=-1).reshape(self.out_features, -1)

    def zeros(self) -> np.ndarray:
        """Zero points per block [N, k_blocks] (float32)."""
        if self.zero_points is None:
            return np.full((self.out_features, self.k_blocks), 2 ** (self.bits - 1), np.float32)
        zp = self.zero_points
        if self.bits == 4:
            zp = np.stack([zp & 0x0F, zp >> 4], axis=-1).reshape(self.out_features, -1)
        return zp[:, : self.k_blocks].astype(np.float32)

    def dequantize(self) -> np.ndarray:
        """The float32 weight W [N, K] this packing represents."""
        codes = self.codes().astype(np.float32).reshape(self.out_features, self.k_blocks, -1)
        w = (codes - self.zeros()[..., None]) * self.scales.astype(np.float32)[..., None]
        return w.reshape(self.out_features, -1)[:, : self.in_features]

    def nbytes(self) -> int:
        """Bytes of the packed tensors."""
        zp = 0 if self.zero_points is None else self.zero_points.nbytes
        return int(self.qweight.nbytes + self.scales.nbytes + zp)

    @staticmethod
    def concat(parts: list[PackedWeight]) -> PackedWeight:
        """Stack weights with the same K along N (e.g. q, k, v into one QKV weight)."""
        first = parts[0]
        if len(parts) == 1:
            return first
        for p in parts[1:]:
            if (p.bits, p.block_size, p.in_features) != (
                first.bits,
                first.block_size,
                first.in_features,
            ):
                raise ConfigError("packed weights to concatenate differ in bits, block or K")
            if (p.zero_points is None) != (first.zero_points is None):
                raise ConfigError("packed weights to concatenate mix symmetric and asymmetric")
        zps = None if first.zero_points is None else np.concatenate([p.zero_points for p in parts])
        return PackedWeight(
            np.concatenate([p.qweight for p in parts]),
            np.concatenate([p.scales for p in parts]),
            zps,
            first.bits,
            first.block_size,
            first.in_features,
        )


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack integer codes [..., M] (values < 2^bits) into bytes [..., M * bits / 8]."""
    codes = codes.astype(np.uint8)
    if bits == 8:
        return codes
    if codes.shape[-1] % 2:
        codes = np.concatenate([codes, np.zeros((*codes.shape[:-1], 1), np.uint8)], axis=-1)
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def check_block(bits: int, block_size: int, what: str = "block_size") -> None:
    """Raise ConfigError unless ``bits`` and the block size are a supported packing."""
    if bits not in BITS:
        raise ConfigError(f"bits must be one of {BITS}, got {bits}")
    if block_size < 16 or block_size & (block_size - 1):
        raise ConfigError(f"{what} must be a power of two >= 16, got {block_size}")


def block_params(blocks: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Round-to-nearest scale and zero point of each block: the one place they are chosen.

    Asymmetric: each block maps [min(w, 0), max(w, 0)] onto [0, 2^bits - 1] with a zero
    point. Symmetric: scale = absmax / (2^(bits-1) - 1), zero point 2^(bits-1). A block of
    zeros gets scale 1.

    Args:
        blocks: weights [..., block]; computed in float32 (float64 input: in float64).
    Returns:
        scales [...] and zero points [...] in that dtype (the zero points integer-valued).
    """
    dtype = np.result_type(blocks.dtype, np.float32)
    qmax = 2**bits - 1
    if symmetric:
        mid = 2 ** (bits - 1)
        scales = np.abs(blocks).max(axis=-1) / (mid - 1)
        scales = np.where(scales == 0, 1.0, scales).astype(dtype)
        return scales, np.full(scales.shape, mid, dtype)
    lo, hi = np.minimum(blocks.min(axis=-1), 0.0), np.maximum(blocks.max(axis=-1), 0.0)
    scales = ((hi - lo) / qmax).astype(dtype)
    scales = np.where(scales == 0, 1.0, scales).astype(dtype)
    return scales, np.clip(np.round(-lo / scales), 0, qmax).astype(dtype)


def quantize_rtn(
    weight: np.ndarray, bits: int = 4, block_size: int = 32, symmetric: bool = False
) -> PackedWeight:
    """Round-to-nearest quantization of W [N, K] per block of ``block_size`` along K.

    Scales and zero points from :func:`block_params`; a K that is not a multiple of the
    block is zero-padded in its last block.
    """
    check_block(bits, block_size)
    w = np.asarray(weight, dtype=np.float32)
    n, k = w.shape
    k_blocks = -(-k // block_size)
    padded = np.zeros((n, k_blocks * block_size), np.float32)
    padded[:, :k] = w
    blocks = padded.reshape(n, k_blocks, block_size)
    scales, zeros = block_params(blocks, bits, symmetric)
    codes = np.clip(np.round(blocks / scales[..., None]) + zeros[..., None], 0, 2**bits - 1)
    qweight = pack_codes(codes, bits).reshape(n, k_blocks, block_size * bits // 8)
    zero_points = None if symmetric else pack_codes(zeros, bits)
    return PackedWeight(qweight, scales, zero_points, bits, block_size, k)


# --- Quantized bundles -------------------------------------------------------------
# A quantized bundle stores each quantized weight ``NAME`` (e.g.
# ``model.layers.0.mlp.up_proj.weight``) as three tensors in weights.safetensors instead of
# ``NAME``: ``NAME.qweight`` (uint8), ``NAME.scales`` (float32), ``NAME.zero_points``
# (uint8, only if asymmetric), in MatMulNBits layout. The manifest's ``quantization``
# holds a :class:`QuantSpec`.

PACKED_SUFFIXES = (".qweight", ".scales", ".zero_points")


@dataclass(frozen=True)
class QuantSpec:
    """The manifest's ``quantization`` entry of a quantized bundle.

    ``tensors`` lists the weight names stored packed; ``method`` is how the codes were
    chosen (rtn, gptq, mlgptq, nncf-...); ``calibration`` records tasks and sample counts.
    """

    method: str
    bits: int
    group_size: int
    symmetric: bool
    tensors: list[str]
    backend: str = "tinyllm"
    format: str = "matmulnbits"
    act_order: bool = False
    lora: str | None = None
    calibration: dict[str, object] | None = None

    @classmethod
    def from_manifest(cls, data: dict[str, object], where: str) -> QuantSpec:
        """Parse the manifest's ``quantization`` dict; unknown keys and bad values are errors."""
        from tinyllm.config import from_dict

        spec = from_dict(cls, data, where)
        if spec.format != "matmulnbits":
            raise ConfigError(f"{where}: quantization format {spec.format!r} is not supported")
        if spec.bits not in BITS:
            raise ConfigError(f"{where}: quantization bits must be one of {BITS}")
        if spec.group_size < 16 or spec.group_size & (spec.group_size - 1):
            raise ConfigError(f"{where}: group_size must be a power of two >= 16")
        return spec

    def packed_shapes(self, name: str, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the packed tensors of weight ``name`` of ``shape`` [N, K]."""
        n, k = shape
        blocks = -(-k // self.group_size)
        shapes = {
            f"{name}.qweight": (n, blocks, self.group_size * self.bits // 8),
            f"{name}.scales": (n, blocks),
        }
        if not self.symmetric:
            shapes[f"{name}.zero_points"] = (n, -(-blocks * self.bits // 8))
        return shapes

    def to_dict(self) -> dict[str, object]:
        """The manifest form."""
        from tinyllm.config import to_dict

        result: dict[str, object] = to_dict(self)
        return result


def packed_tensors(packed: dict[str, PackedWeight]) -> dict[str, np.ndarray]:
    """The weights.safetensors entries of packed weights (see :class:`QuantSpec`)."""
    out: dict[str, np.ndarray] = {}
    for name, p in packed.items():
        out[f"{name}.qweight"] = p.qweight
        out[f"{name}.scales"] = p.scales.astype(np.float32)
        if p.zero_points is not None:
            out[f"{name}.zero_points"] = p.zero_points
    return out


def unpack_tensors(
    tensors: dict[str, np.ndarray], spec: QuantSpec, shapes: dict[str, tuple[int, ...]]
) -> tuple[dict[str, PackedWeight], dict[str, np.ndarray]]:
    """Split a quantized bundle's tensors into packed weights and the float rest.

    Args:
        tensors: everything in weights.safetensors.
        spec: the bundle's quantization spec.
        shapes: the model config's weight shapes (for K of each packed weight).
    """
    packed = {}
    for name in spec.tensors:
        packed[name] = PackedWeight(
            tensors[f"{name}.qweight"],
            tensors[f"{name}.scales"],
            None if spec.symmetric else tensors[f"{name}.zero_points"],
            spec.bits,
            spec.group_size,
            shapes[name][1],
        )
    rest = {k: v for k, v in tensors.items() if not k.endswith(PACKED_SUFFIXES)}
    return packed, rest


def read_weights(bundle: WeightsSource) -> tuple[dict[str, PackedWeight], dict[str, np.ndarray]]:
    """A bundle's weights: (packed weights by name, float tensors); no packed ones if float."""
    from safetensors.numpy import load_file

    tensors = load_file(str(bundle.weights_path))
    spec = bundle.quant_spec()
    if spec is None:
        return {}, tensors
    return unpack_tensors(tensors, spec, bundle.config.weight_shapes())
