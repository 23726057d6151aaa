"""Packed int4/int8 weights as standard ONNX: blocked ``DequantizeLinear`` (opset 21).

The ``standard`` flavour's quantized linears read ``W [K, N]`` (in, out) through
``DequantizeLinear(codes, scale, zero_point, axis=0, block_size)`` feeding ``MatMul``:
the form TensorRT turns into weight-only int4/int8 GEMMs, and that other runtimes read.

The mapping from :class:`~tinyllm.quantformat.PackedWeight` (MatMulNBits layout) is exact,
with no re-quantization: the same integer codes, transposed to ``[K, N]``, with the same
float32 scales. A symmetric packing (zero point ``2^(bits-1)`` everywhere) becomes signed
codes ``q - 2^(bits-1)`` without a zero point (what TensorRT requires); an asymmetric one
keeps its unsigned codes and zero points. Either way ``(q - zp) * scale`` is the same
float32 number for every element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from tinyllm.quantformat import PackedWeight

QDQ_OPSET = 21
_TYPES = {(4, True): TensorProto.INT4, (4, False): TensorProto.UINT4}
_TYPES.update({(8, True): TensorProto.INT8, (8, False): TensorProto.UINT8})


@dataclass(frozen=True)
class QdqWeight:
    """One weight in DequantizeLinear form.

    ``codes [K, N]`` and ``zero_points [K_blocks, N]`` hold integer values (int8 arrays
    when ``signed``, else uint8; 4-bit values for int4), ``scales [K_blocks, N]`` float32.
    """

    codes: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray | None
    bits: int
    block_size: int

    @property
    def signed(self) -> bool:
        """Signed codes without zero points (from a symmetric packing)."""
        return self.zero_points is None

    def dequantize(self) -> np.ndarray:
        """W [K, N] float32, as DequantizeLinear computes it."""
        k = self.codes.shape[0]
        scales = np.repeat(self.scales, self.block_size, axis=0)[:k]
        codes = self.codes.astype(np.float32)
        if self.zero_points is not None:
            codes = codes - np.repeat(self.zero_points, self.block_size, axis=0)[:k]
        return codes * scales


def symmetric(packed: PackedWeight) -> bool:
    """Whether every zero point is the midpoint ``2^(bits-1)`` (a symmetric packing)."""
    return packed.zero_points is None or bool(np.all(packed.zeros() == 2 ** (packed.bits - 1)))


def to_qdq(packed: PackedWeight) -> QdqWeight:
    """The DequantizeLinear form of a packed weight (exact; see the module docstring)."""
    k = packed.in_features
    codes = packed.codes()[:, :k].T  # [K, N] uint8
    scales = np.ascontiguousarray(packed.scales.astype(np.float32).T)  # [K_blocks, N]
    if symmetric(packed):
        mid = 2 ** (packed.bits - 1)
        signed = (codes.astype(np.int16) - mid).astype(np.int8)
        return QdqWeight(np.ascontiguousarray(signed), scales, None, packed.bits, packed.block_size)
    zeros = np.ascontiguousarray(packed.zeros().astype(np.uint8).T)  # [K_blocks, N]
    return QdqWeight(np.ascontiguousarray(codes), scales, zeros, packed.bits, packed.block_size)


def _pack_nibbles(values: np.ndarray) -> bytes:
    """ONNX's int4 raw data: two elements a byte in row-major order, the first in the low
    nibble (an odd count pads the last high nibble with 0)."""
    flat = values.reshape(-1).astype(np.uint8) & 0x0F
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()


def integer_tensor(name: str, values: np.ndarray, bits: int, signed: bool) -> onnx.TensorProto:
    """An int4/uint4/int8/uint8 initializer holding ``values`` exactly."""
    elem = _TYPES[(bits, signed)]
    raw = _pack_nibbles(values) if bits == 4 else values.astype(np.int8 if signed else np.uint8)
    data = raw if isinstance(raw, bytes) else raw.tobytes()
    return onnx.helper.make_tensor(name, elem, list(values.shape), data, raw=True)


def tensor_values(tensor: onnx.TensorProto) -> np.ndarray:
    """The integer values of an initializer written by :func:`integer_tensor` (int16)."""
    from onnx import numpy_helper

    return np.asarray(numpy_helper.to_array(tensor)).astype(np.int16)
