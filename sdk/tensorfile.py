"""safetensors files: read and check the header without loading tensors (no torch needed)."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

from tinyllm.errors import BundleError

# Bytes per element of the safetensors dtype names.
DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
# tinyllm's dtype names (manifest) to safetensors' names.
DTYPE_NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a safetensors header."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Read and check a safetensors header: tensor infos and metadata.

    Checks that the header parses, that every tensor's byte range matches its dtype and
    shape, and that the file is exactly as long as the header says (so a truncated or
    padded file is caught without reading the tensors).
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise BundleError(f"{path}: not a safetensors file ({size} bytes, no header)")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > min(_MAX_HEADER, size - 8):
                raise BundleError(
                    f"{path}: safetensors header claims {header_len} bytes but the file has "
                    f"{size} bytes: the file is truncated or not safetensors"
                )
            header = json.loads(f.read(header_len))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: unreadable safetensors header ({e})") from e
    if not isinstance(header, dict):
        raise BundleError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise BundleError(f"{path}: safetensors __metadata__ must map names to strings")
    infos: dict[str, TensorInfo] = {}
    data_end = 0
    for name, entry in header.items():
        try:
            dtype, shape = entry["dtype"], tuple(_whole(d) for d in entry["shape"])
            start, end = (_whole(x) for x in entry["data_offsets"])
            if not isinstance(dtype, str) or min((*shape, start, end), default=0) < 0:
                raise ValueError("dtype must be a name; shape and offsets must be >= 0")
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{path}: malformed header entry for tensor {name!r}") from e
        expected = prod(shape) * DTYPE_SIZES.get(dtype, 0)
        if dtype not in DTYPE_SIZES or end - start != expected:
            raise BundleError(
                f"{path}: tensor {name!r} ({dtype}, shape {list(shape)}) has a byte range of "
                f"{end - start}, expected {expected}"
            )
        infos[name] = TensorInfo(dtype, shape, start, end)
        data_end = max(data_end, end)
    actual = size - 8 - header_len
    if actual != data_end:
        state = "truncated" if actual < data_end else "longer than its header says"
        raise BundleError(
            f"{path}: file is {state}: {actual} bytes of tensor data, header needs {data_end}"
        )
    return infos, dict(metadata)


def save_tensors(path: Path, tensors: Mapping[str, Any], metadata: dict[str, str]) -> None:
    """Write torch tensors or numpy arrays to a safetensors file."""
    if any(type(t).__module__.startswith("torch") for t in tensors.values()):
        from safetensors.torch import save_file as save_torch

        save_torch({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    else:
        import numpy as np  # here, not at import: opening a bundle needs no numpy
        from safetensors.numpy import save_file as save_numpy

        # safetensors.numpy writes a strided view's buffer as it lies in memory: silently
        # wrong for a transposed or moved-axis array, so every array goes in contiguous.
        arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        save_numpy(arrays, str(path), metadata=metadata)


def _whole(value: object) -> int:
    """A header's shape entry or offset: a JSON integer (not a float, bool or infinity)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return value
