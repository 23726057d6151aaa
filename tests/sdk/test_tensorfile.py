"""safetensors files of the bundle (tinyllm.tensorfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from tinyllm.tensorfile import read_header, save_tensors


def test_strided_numpy_arrays_are_written_in_logical_order(tmp_path: Path) -> None:
    # A transposed view's buffer is in the other order; it must be written as it reads.
    base = np.arange(24, dtype=np.int32).reshape(4, 6)
    tensors = {"t": base.T, "m": np.moveaxis(base.reshape(2, 2, 6), 0, -1)}
    save_tensors(tmp_path / "x.safetensors", tensors, {"format": "pt"})
    loaded = load_file(str(tmp_path / "x.safetensors"))
    for name, value in tensors.items():
        np.testing.assert_array_equal(loaded[name], value)
    infos, metadata = read_header(tmp_path / "x.safetensors")
    assert infos["t"].shape == (6, 4) and metadata == {"format": "pt"}
