"""The KV buffers (session.py): they cost the pages their tokens fill, not the whole
context, and GroupQueryAttention writes each row's new token in place at that row's own
position (past and present share the buffer; ``seqlens_k`` is each row's length - 1)."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyllm.runtime import Engine, GenerationConfig
from tinyllm.runtime.session import lazy_zeros

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/pagemap"
)


def resident_pages(array: np.ndarray) -> int:
    """Pages of ``array``'s memory that are resident now (/proc/self/pagemap, bit 63)."""
    page = mmap.PAGESIZE
    first = array.ctypes.data // page
    last = (array.ctypes.data + array.nbytes + page - 1) // page
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        entries = np.frombuffer(f.read((last - first) * 8), "<u8")
    return int(((entries >> np.uint64(63)) & np.uint64(1)).sum())


def test_resident_pages_sees_written_memory() -> None:
    """The measure itself: untouched memory counts nothing, written memory every page."""
    buf = lazy_zeros((64, 1024), np.dtype("float32"))  # 64 pages
    assert resident_pages(buf) == 0
    buf[:] = 1.0
    assert resident_pages(buf) == buf.nbytes // mmap.PAGESIZE


def test_lazy_buffer_holds_only_written_pages() -> None:
    shape = (8, 3, 4096, 64)  # SmolLM2's KV buffer of one layer at 8 rows, 4096 tokens
    buf = lazy_zeros(shape, np.dtype("float32"))
    assert buf.shape == shape and buf.dtype == np.float32
    buf[0, :, :20] = 1.0  # 20 tokens in row 0: 5 KiB in each of the 3 heads' planes
    assert resident_pages(buf) == 3 * 2  # 2 pages a head (24 KiB, not 24 MiB)
    buf[1, :, :20] = 2.0
    assert resident_pages(buf) == 2 * 3 * 2
    assert float(buf[1, 2, 19, 63]) == 2.0 and float(buf[1, 2, 20, 0]) == 0.0


def test_lazy_zeros_of_nothing() -> None:
    assert lazy_zeros((0, 4), np.dtype("float32")).shape == (0, 4)


def test_engine_rows_cost_their_tokens(exported: Path) -> None:
    """A generated row makes resident about the pages its tokens fill, in every layer."""
    engine = Engine.load(exported, engine="onnx-cpu-fp32", max_batch=4, max_seq_len=256)
    try:
        kv = engine.session.kv
        assert sum(resident_pages(b) for b in kv) == 0
        result = engine.generate("Hello there", GenerationConfig(max_new_tokens=6))[0]
        held = result.prompt_tokens + len(result.token_ids)
        c = engine.bundle.config
        per_head = -(-held * c.head_dim * 4 // mmap.PAGESIZE)  # pages of one head's plane
        expected = len(kv) * c.num_key_value_heads * per_head
        got = sum(resident_pages(b) for b in kv)
        # Row 0 only; a head's plane may straddle one more page than it fills.
        assert expected <= got <= 2 * expected
        assert got * mmap.PAGESIZE < engine.session.kv_bytes / 8
    finally:
        engine.close()


def test_decode_writes_each_row_in_place_at_its_own_length(exported: Path) -> None:
    """Rows of different lengths in one decode step: each row's buffers change at exactly
    its next position (shared past/present, ``seqlens_k`` fed per row), and its logits are
    those of the whole sequence run from scratch (attention read exactly that row's tokens).
    """
    engine = Engine.load(exported, engine="onnx-cpu-fp32", max_batch=2, max_seq_len=64)
    s = engine.session
    prompts = [engine.encode("Hello there"), engine.encode("The quick brown fox jumps over")]
    lengths = [len(p) for p in prompts]
    assert lengths[0] != lengths[1]
    s.prefill(prompts)
    before = [buf.copy() for buf in s.kv]
    tokens = [7, 11]
    logits = s.decode(tokens, lengths).copy()
    for buf, old in zip(s.kv, before, strict=True):
        changed = np.argwhere((buf != old).any(axis=(1, 3)))  # (row, position) pairs
        assert changed.tolist() == [[0, lengths[0]], [1, lengths[1]]]
    for row, prompt in enumerate(prompts):
        alone = s.prefill([[*prompt, tokens[row]]])[0]
        np.testing.assert_allclose(logits[row], alone, atol=1e-4)
