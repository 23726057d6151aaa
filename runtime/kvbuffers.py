"""Host KV buffers that cost the tokens they hold, not the whole context.

A decoder session keeps one buffer per layer and kind ``[max_batch, KV, max_seq, H]``;
most of it is never written (rows are short beside the context). :func:`lazy_zeros`
makes each buffer an anonymous map whose pages become resident only as tokens are
written into them (tests/runtime/test_session.py reads /proc/self/pagemap to check).
"""

from __future__ import annotations

import mmap

import numpy as np


def lazy_zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zeroed array whose memory becomes resident page by page, as it is written.

    For the KV buffers: a row then costs the tokens it holds, not the whole context.
    ``np.zeros`` would not do: numpy asks for transparent huge pages on large arrays
    (``madvise(MADV_HUGEPAGE)``), so the first tokens written into each head's plane make
    2 MiB resident (measured in docs/runtime.md: 127 MiB a row on SmolLM2 at 4096
    tokens). An anonymous map with ``MADV_NOHUGEPAGE`` keeps 4 KiB pages.
    """
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size == 0:
        return np.zeros(shape, dtype)
    memory = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # Linux; elsewhere the OS's default pages
        memory.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(memory, dtype).reshape(shape)  # the array keeps the map alive
