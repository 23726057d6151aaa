"""The KV buffers of a session (kvbuffers.py, hostbindings.py): they cost the pages their
tokens fill, not the whole context, and GroupQueryAttention writes each row's new token in
place at that row's own position (past and present share the buffer; ``seqlens_k`` is each
row's length - 1)."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyllm.errors import ConfigError
from tinyllm.runtime import Engine, GenerationConfig
from tinyllm.runtime.kvbuffers import lazy_zeros

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


def test_decode_inputs_are_bound_once_and_rewritten_each_step(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decode run writes its inputs into arrays bound once per run shape: later steps
    bind nothing, and every step (other tokens, lengths, adapter slots, rows) gives the
    logits of the general path that binds fresh arrays per call."""
    import onnxruntime as ort

    engine = Engine.load(served, max_batch=4, max_seq_len=64, prefix_cache_mb=0)
    engine._serving()  # binds the tasks' adapters into their slots
    s = engine.session
    rng = np.random.default_rng(0)
    s.prefill([[int(i) for i in rng.integers(5, 300, 6)] for _ in range(4)])
    steps = [  # (start, tokens, lengths, adapter slots)
        (0, [7, 11, 13, 17], [6, 6, 6, 6], [0, 1, 2, 0]),
        (1, [19, 23], [7, 7], [2, 1]),
        (0, [29, 31, 37, 41], [7, 8, 8, 7], [1, 0, 0, 2]),
    ]
    for start, tokens, lengths, slots in steps:  # warm-up: each run shape bound once
        s.decode(tokens, lengths, np.array(slots), start=start)

    def refuse(*args: object) -> None:
        raise AssertionError("a decode step bound an input")

    monkeypatch.setattr(ort.IOBinding, "bind_cpu_input", refuse)
    monkeypatch.setattr(ort.IOBinding, "bind_ortvalue_input", refuse)
    got = [s.decode(t, n, np.array(a), start=b).copy() for b, t, n, a in steps]
    monkeypatch.undo()
    for (start, tokens, lengths, slots), logits in zip(steps, got, strict=True):
        ids = np.array(tokens, np.int64)[:, None]
        held = np.array(lengths, np.int64)
        want = s._step(ids, start, held, np.ones(len(tokens), np.int64), np.array(slots))
        np.testing.assert_array_equal(logits, want)
    # The adapter slots matter here: row 1 of the last step under slot 1 and under slot 0.
    base = s._step(np.array([[31]]), 1, np.array([8]), np.ones(1, np.int64), np.array([1]))[0]
    assert np.abs(base - got[2][1]).max() > 1e-3
    with pytest.raises(ConfigError, match="outside"):
        s.decode([1, 2], [6, 6], start=3)
    engine.close()
