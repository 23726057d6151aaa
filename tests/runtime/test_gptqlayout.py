"""The GPTQ checkpoint layout (tinyllm.runtime.gptqlayout): packing conventions, round
trips bit for bit, and the checks that catch a wrong packing."""

from __future__ import annotations

import numpy as np
import pytest

from tinyllm.errors import ConfigError
from tinyllm.quantformat import PackedWeight, quantize_rtn
from tinyllm.runtime.gptqlayout import (
    GPTQLayoutError,
    bundle_numbers,
    check_same,
    from_gptq,
    pack_int32,
    to_gptq,
    unpack_int32,
)


def reference_unpack(words: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Field j of word w is (w >> bits*j) & mask, the fields of a word running along axis:
    written out with Python ints, independently of the module under test."""
    per, mask = 32 // bits, (1 << bits) - 1
    w = np.asarray(words).view(np.uint32)
    rows, cols = w.shape
    out_shape = (rows * per, cols) if axis == 0 else (rows, cols * per)
    out = np.zeros(out_shape, np.int64)
    for r in range(rows):
        for c in range(cols):
            word = int(w[r, c])
            for j in range(per):
                value = (word >> (bits * j)) & mask
                if axis == 0:
                    out[r * per + j, c] = value
                else:
                    out[r, c * per + j] = value
    return out


def test_fields_go_low_bits_first() -> None:
    # Eight 4-bit values 1..8 along K make the word 0x87654321; four bytes alike for int8.
    k = np.arange(1, 9).reshape(8, 1)
    assert pack_int32(k, 4, axis=0).view(np.uint32)[0, 0] == 0x87654321
    row = np.array([[0x11, 0x22, 0x33, 0x44]])
    assert pack_int32(row, 8, axis=1).view(np.uint32)[0, 0] == 0x44332211
    assert pack_int32(k, 4, axis=0).dtype == np.int32


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("axis", [0, 1])
def test_pack_unpack_round_trip(bits: int, axis: int) -> None:
    rng = np.random.default_rng(bits + axis)
    values = rng.integers(0, 2**bits, (16, 24))
    words = pack_int32(values, bits, axis)
    np.testing.assert_array_equal(unpack_int32(words, bits, axis), values)
    np.testing.assert_array_equal(reference_unpack(words, bits, axis), values)
    assert words.flags["C_CONTIGUOUS"]


def test_pack_rejects_partial_words_and_other_bits() -> None:
    with pytest.raises(GPTQLayoutError, match="whole int32 words"):
        pack_int32(np.zeros((12, 4)), 4, axis=0)
    with pytest.raises(ConfigError, match="4- or 8-bit"):
        pack_int32(np.zeros((12, 4)), 3, axis=0)


def packed(bits: int, symmetric: bool, shape: tuple[int, int] = (24, 80)) -> PackedWeight:
    rng = np.random.default_rng(bits * 10 + symmetric)
    return quantize_rtn(rng.standard_normal(shape).astype(np.float32), bits, 32, symmetric)


@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_gptq_tensors_hold_the_bundle_numbers_bit_for_bit(
    fmt: str, bits: int, symmetric: bool
) -> None:
    p = packed(bits, symmetric)  # K = 80: the last group of 32 is partial
    t = to_gptq("w", p, fmt)  # type: ignore[arg-type]
    n, k, groups, per = 24, 80, 3, 32 // bits
    assert t["w.qweight"].shape == (k // per, n) and t["w.qweight"].dtype == np.int32
    assert t["w.qzeros"].shape == (groups, n // per) and t["w.qzeros"].dtype == np.int32
    assert t["w.scales"].shape == (groups, n) and t["w.scales"].dtype == np.float32
    np.testing.assert_array_equal(t["w.g_idx"], np.arange(k) // 32)
    want = bundle_numbers(p)
    # Independent reading: codes along K, zero points along N (v1: stored minus 1).
    np.testing.assert_array_equal(reference_unpack(t["w.qweight"], bits, 0).T, want.codes)
    offset = 1 if fmt == "gptq" else 0
    np.testing.assert_array_equal(reference_unpack(t["w.qzeros"], bits, 1).T + offset, want.zeros)
    assert t["w.scales"].T.tobytes() == np.ascontiguousarray(p.scales).tobytes()
    check_same("w", want, from_gptq(t, "w", bits, 32, fmt))  # type: ignore[arg-type]
    # And the numbers dequantize to the bundle's weight exactly.
    w = (want.codes - np.repeat(want.zeros, 32, axis=1)[:, :k]) * np.repeat(
        want.scales, 32, axis=1
    )[:, :k]
    np.testing.assert_array_equal(w.astype(np.float32), p.dequantize())


def test_symmetric_zero_points_are_the_midpoint() -> None:
    t = to_gptq("w", packed(4, True), "gptq")
    assert set(t["w.qzeros"].view(np.uint32).ravel().tolist()) == {0x77777777}  # 8 - 1


def test_zero_point_zero_has_no_v1_encoding() -> None:
    w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    w[3, :32] = np.abs(w[3, :32]) + 0.5  # an all-positive group: its zero point is 0
    p = quantize_rtn(w, 4, 32, symmetric=False)
    assert bundle_numbers(p).zeros[3, 0] == 0
    with pytest.raises(GPTQLayoutError, match=r"zero point 0.*gptq_v2"):
        to_gptq("w", p, "gptq")
    t = to_gptq("w", p, "gptq_v2")
    check_same("w", bundle_numbers(p), from_gptq(t, "w", 4, 32, "gptq_v2"))


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda t: t["w.qweight"].__setitem__((2, 5), t["w.qweight"][2, 5] ^ 0x10),
        lambda t: t["w.qzeros"].__setitem__((1, 0), t["w.qzeros"][1, 0] ^ 0x1),
        lambda t: t["w.scales"].__setitem__(
            (0, 3), np.nextafter(t["w.scales"][0, 3], np.float32(np.inf))
        ),
    ],
    ids=["one code bit", "one zero-point bit", "one scale ulp"],
)
def test_a_corrupted_packing_fails_the_check(corrupt: object) -> None:
    p = packed(4, False)
    t = {k: v.copy() for k, v in to_gptq("w", p, "gptq").items()}
    corrupt(t)  # type: ignore[operator]
    with pytest.raises(GPTQLayoutError, match="do not unpack to the bundle"):
        check_same("w", bundle_numbers(p), from_gptq(t, "w", 4, 32, "gptq"))


def test_the_wrong_zero_point_convention_fails_the_check() -> None:
    p = packed(4, False)
    v1 = to_gptq("w", p, "gptq")
    with pytest.raises(GPTQLayoutError, match="zero points"):
        check_same("w", bundle_numbers(p), from_gptq(v1, "w", 4, 32, "gptq_v2"))


def test_g_idx_must_be_the_static_groups() -> None:
    p = packed(4, False)
    t = dict(to_gptq("w", p, "gptq"))
    t["w.g_idx"] = t["w.g_idx"][::-1].copy()
    with pytest.raises(GPTQLayoutError, match="g_idx"):
        from_gptq(t, "w", 4, 32, "gptq")


def test_shapes_that_do_not_fill_words_are_refused() -> None:
    with pytest.raises(GPTQLayoutError, match="divide by 8"):
        to_gptq("w", packed(4, False, (12, 64)), "gptq")
    with pytest.raises(ConfigError, match="unknown GPTQ checkpoint format"):
        to_gptq("w", packed(4, False), "marlin")  # type: ignore[arg-type]
