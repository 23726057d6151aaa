"""One step of the ``standard`` flavour's graph over host KV buffers.

The standard graph (plain ONNX ops, for TensorRT and other runtimes) concatenates past
and new keys instead of writing into a shared buffer. So each call feeds the rows'
buffers up to the longest row, masks each row's unused positions, and copies the new
keys and values back into the rows: a copy per step (that flavour is for portability,
not speed).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def run_standard(
    sess: Any,
    feeds: dict[str, np.ndarray],
    kv: list[np.ndarray],
    lora: dict[str, np.ndarray],
    start: int,
    past: np.ndarray,
    lengths: np.ndarray,
    max_seq_len: int,
    heads: list[str],
) -> dict[str, np.ndarray]:
    """Run ``feeds`` (``input_ids [b, W]`` right-padded, ...) after ``past [b]`` tokens in
    rows ``start..start+b-1`` of ``kv`` (the ``2 * layers`` buffers ``[B, KV, S, H]``,
    key then value of each layer), ``lengths [b]`` of them real; writes each row's new
    keys and values after its past. Returns the outputs named in ``heads`` (``logits``,
    ``greedy_ids``), the only ones fetched besides the KV."""
    b, width = feeds["input_ids"].shape
    p = int(past.max())
    mask = np.zeros((b, p + width), np.int64)
    for row in range(b):
        mask[row, : past[row]] = 1
        mask[row, p : p + lengths[row]] = 1
    positions = past[:, None] + np.arange(width)[None, :]
    feeds["position_ids"] = np.minimum(positions, max_seq_len - 1)
    feeds["attention_mask"] = mask
    rows = slice(start, start + b)
    names = list(heads)
    for i in range(len(kv) // 2):
        for j, kind in enumerate(("key", "value")):
            feeds[f"past_{kind}.{i}"] = np.ascontiguousarray(kv[2 * i + j][rows, :, :p])
            names.append(f"present_{kind}.{i}")
    outputs = sess.run(names, {**feeds, **lora})
    for buf, present in zip(kv, outputs[len(heads) :], strict=True):
        for row in range(b):
            n, at = int(lengths[row]), int(past[row])
            buf[start + row, :, at : at + n] = present[row, :, p : p + n]
    return dict(zip(heads, outputs, strict=False))
