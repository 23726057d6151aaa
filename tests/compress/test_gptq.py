"""GPTQ/RTN against an independent dense re-derivation, RTN, and the packed format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyllm.compress.gptq import (
    gptq_quantize,
    group_params,
    output_error,
    quantize_column,
    rtn_quantize,
)
from tinyllm.errors import ConfigError
from tinyllm.quantformat import quantize_rtn


def correlated_inputs(k: int, n: int, seed: int = 0) -> torch.Tensor:
    """X [k, n] with strongly correlated features and uneven scales (like activations)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k // 4, generator=g) @ torch.randn(k // 4, k, generator=g) / k**0.5
    scale = torch.exp(torch.randn(k, generator=g))
    return (mix + 0.1 * torch.eye(k)) @ torch.randn(k, n, generator=g) * scale[:, None]


def hessian_of(x: torch.Tensor) -> torch.Tensor:
    return 2 * x @ x.T / x.shape[1]


def dense_gptq(
    w: torch.Tensor, h: torch.Tensor, bits: int, group: int, act_order: bool, damp: float
) -> torch.Tensor:
    """Textbook OBS/GPTQ: quantize one column, re-invert the Hessian of the rest (float64)."""
    w = w.double().clone()
    h = h.double().clone()
    k = w.shape[1]
    h += torch.eye(k, dtype=h.dtype) * damp * torch.diagonal(h).mean()
    order = torch.argsort(torch.diagonal(h), descending=True) if act_order else torch.arange(k)
    params = {}
    if act_order:
        for g in range(k // group):
            params[g] = group_params(w[:, g * group : (g + 1) * group].float(), bits, False)
    q = torch.zeros_like(w)
    remaining = [int(c) for c in order]
    while remaining:
        col = remaining[0]
        g = col // group
        if g not in params:
            params[g] = group_params(w[:, g * group : (g + 1) * group].float(), bits, False)
        s, z = (p.double() for p in params[g])
        _, dq = quantize_column(w[:, col], s, z, bits)
        q[:, col] = dq
        hinv = torch.linalg.inv(h[remaining][:, remaining])
        err = (w[:, col] - dq) / hinv[0, 0]
        w[:, remaining] -= err[:, None] * hinv[0][None, :]
        remaining = remaining[1:]
    return q.float()


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_matches_dense_reference(act_order: bool) -> None:
    torch.manual_seed(0)
    w = torch.randn(24, 64)
    h = hessian_of(correlated_inputs(64, 512))
    ours = gptq_quantize(w, h, 4, 16, act_order=act_order, block_size=32).dequantized
    ref = dense_gptq(w, h, 4, 16, act_order, 0.01)
    agree = (ours - ref).abs() < 1e-4
    assert agree.float().mean() > 0.99  # a rare rounding tie may flip one code
    assert output_error(w, ours, h) == pytest.approx(output_error(w, ref, h), rel=0.02)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_on_correlated_inputs(act_order: bool) -> None:
    torch.manual_seed(1)
    w = torch.randn(64, 128)
    h = hessian_of(correlated_inputs(128, 1024, seed=1))
    gptq = gptq_quantize(w, h, 4, 32, act_order=act_order)
    rtn = rtn_quantize(w, 4, 32)
    assert output_error(w, gptq.dequantized, h) < 0.7 * output_error(w, rtn.dequantized, h)


@pytest.mark.parametrize(("bits", "symmetric"), [(4, False), (4, True), (8, False), (8, True)])
def test_packing_round_trips(bits: int, symmetric: bool) -> None:
    torch.manual_seed(2)
    w = torch.randn(16, 64)
    h = hessian_of(correlated_inputs(64, 256))
    for result in (gptq_quantize(w, h, bits, 32, symmetric), rtn_quantize(w, bits, 32, symmetric)):
        np.testing.assert_allclose(
            result.packed.dequantize(), result.dequantized.numpy(), atol=1e-6
        )
        assert result.packed.qweight.shape == (16, 2, 32 * bits // 8)
        assert (result.packed.zero_points is None) == symmetric


def torch_rtn(w: torch.Tensor, bits: int, group: int, symmetric: bool) -> torch.Tensor:
    """Round-to-nearest written out independently in torch: codes [N, K] (float)."""
    n, k = w.shape
    blocks = w.float().reshape(n, k // group, group)  # [N, B, G]
    qmax = 2**bits - 1
    if symmetric:
        mid = 2 ** (bits - 1)
        scale = blocks.abs().amax(-1) / (mid - 1)
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        zero = torch.full_like(scale, float(mid))
    else:
        lo, hi = blocks.amin(-1).clamp(max=0.0), blocks.amax(-1).clamp(min=0.0)
        scale = (hi - lo) / qmax
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        zero = torch.clamp(torch.round(-lo / scale), 0, qmax)
    codes = torch.clamp(torch.round(blocks / scale[..., None]) + zero[..., None], 0, qmax)
    return codes.reshape(n, k)


def awkward_weights() -> torch.Tensor:
    """Rows that hit every branch: zeros, one sign, constants, exact .5 ties, wide ranges."""
    g = torch.Generator().manual_seed(7)
    w = torch.randn(12, 64, generator=g)
    w[0] = 0.0
    w[1] = -w[1].abs()
    w[2] = w[2].abs() * 1e4
    w[3, :32] = 0.25
    w[4] = torch.round(w[4] * 8) / 8  # exact ties after scaling
    w[5] *= 1e-6
    return w


@pytest.mark.parametrize(("bits", "symmetric"), [(4, False), (4, True), (8, False), (8, True)])
def test_rtn_is_the_core_rtn_bit_for_bit(bits: int, symmetric: bool) -> None:
    """One round-to-nearest: compress's rtn_quantize is the core's quantize_rtn."""
    w = awkward_weights()
    ours = rtn_quantize(w, bits, 16, symmetric)
    core = quantize_rtn(w.numpy(), bits, 16, symmetric)
    np.testing.assert_array_equal(ours.packed.qweight, core.qweight)
    np.testing.assert_array_equal(ours.packed.scales.view(np.uint32), core.scales.view(np.uint32))
    if symmetric:
        assert ours.packed.zero_points is None and core.zero_points is None
    else:
        np.testing.assert_array_equal(ours.packed.zero_points, core.zero_points)
    deq = ours.dequantized.numpy()
    np.testing.assert_array_equal(deq.view(np.uint32), core.dequantize().view(np.uint32))
    # ... and the codes are the independent torch derivation's, exactly.
    codes = core.codes().astype(np.float32)
    np.testing.assert_array_equal(codes, torch_rtn(w, bits, 16, symmetric).numpy())
    nudged = w.clone()
    nudged[6, 3] += 0.5  # one weight moved by more than a step: its code changes
    assert not np.array_equal(codes, torch_rtn(nudged, bits, 16, symmetric).numpy())


@pytest.mark.parametrize("symmetric", [False, True])
def test_gptq_group_params_are_the_core_block_params(symmetric: bool) -> None:
    w = awkward_weights()
    for g in range(4):
        group = w[:, g * 16 : (g + 1) * 16]
        scale, zero = group_params(group, 4, symmetric)
        core = quantize_rtn(group.numpy(), 4, 16, symmetric)
        np.testing.assert_array_equal(scale.numpy(), core.scales[:, 0])
        np.testing.assert_array_equal(zero.numpy(), core.zeros()[:, 0])


def test_act_order_groups_stay_contiguous() -> None:
    """With act-order each group's codes decode with that group's own scale (static groups)."""
    torch.manual_seed(3)
    w = torch.randn(8, 64)
    h = hessian_of(correlated_inputs(64, 256))
    result = gptq_quantize(w, h, 4, 16, act_order=True)
    scales = result.packed.scales
    for g in range(4):
        s, _ = group_params(w[:, g * 16 : (g + 1) * 16], 4, False)
        np.testing.assert_allclose(scales[:, g], s.numpy(), rtol=1e-6)


def test_dead_columns_and_bad_arguments() -> None:
    w = torch.randn(8, 32)
    h = hessian_of(correlated_inputs(32, 128))
    h[3, :] = 0
    h[:, 3] = 0
    out = gptq_quantize(w, h, 4, 16).dequantized
    assert out[:, 3].abs().max() < 1e-6
    with pytest.raises(ConfigError, match="bits"):
        gptq_quantize(w, h, 3, 16)
    with pytest.raises(ConfigError, match="multiple of group_size"):
        gptq_quantize(torch.randn(8, 40), torch.eye(40), 4, 16)
    with pytest.raises(ConfigError, match="hessian shape"):
        gptq_quantize(w, torch.eye(16), 4, 16)
