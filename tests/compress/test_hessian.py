"""Hessian cache layout: the upper-triangle packing is exact and in triu_indices order."""

from __future__ import annotations

import pytest
import torch

from tinyllm.compress.gptq import output_error
from tinyllm.compress.hessian import from_upper_triangle, upper_triangle


@pytest.mark.parametrize("k", [1, 2, 5, 64, 577])
def test_upper_triangle_round_trips_exactly(k: int) -> None:
    x = torch.randn(k, 3 * k + 1, generator=torch.Generator().manual_seed(k))
    h = 2 * x @ x.T / x.shape[1]
    h = (h + h.T) / 2  # exactly symmetric, as collect_hessians makes it
    packed = upper_triangle(h)
    rows, cols = torch.triu_indices(k, k)
    assert torch.equal(packed, h[rows, cols])  # row-major upper triangle, diagonal included
    back = from_upper_triangle(packed)
    assert back.dtype == h.dtype and torch.equal(back, h)


def test_output_error_matches_float64_reference() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 400, generator=g)
    h = 2 * x @ x.T / x.shape[1]
    w = torch.randn(48, 96, generator=g)
    q = w + 0.01 * torch.randn(48, 96, generator=g)
    wd, ed = w.double(), (q.double() - w.double())
    ref = float(((ed @ h.double()) * ed).sum() / ((wd @ h.double()) * wd).sum())
    assert output_error(w, q, h) == pytest.approx(ref, rel=1e-4)


def test_aggregations_pool_balance_or_take_the_max() -> None:
    from tinyllm.compress.hessian import TaskHessians, aggregate
    from tinyllm.compress.mlgptq import QuantSettings
    from tinyllm.errors import ConfigError

    g = torch.Generator().manual_seed(1)
    hs = {}
    for name, n, scale in (("a", 10, 1.0), ("b", 1000, 20.0)):
        x = torch.randn(8, 40, generator=g) * scale
        h = 2 * x @ x.T / 40
        hs[name] = TaskHessians(name, {"s": h}, tokens=n, samples=1, fingerprint="-")
    ha, hb = hs["a"].hessians["s"], hs["b"].hessians["s"]
    torch.testing.assert_close(aggregate(hs, "max")["s"], torch.maximum(ha, hb))
    torch.testing.assert_close(aggregate(hs, "mixed")["s"], (10 * ha + 1000 * hb) / 1010)
    balanced = aggregate(hs, "balanced")["s"]
    torch.testing.assert_close(balanced, (ha + hb) / 2)  # token counts do not matter
    for h in (ha, hb):  # 2 x balanced dominates each task's Hessian (Loewner order)
        assert torch.linalg.eigvalsh((2 * balanced - h).double()).min() > -1e-6
    with pytest.raises(ConfigError, match="unknown Hessian aggregation 'sum'"):
        aggregate(hs, "sum")
    with pytest.raises(ConfigError, match="unknown Hessian aggregation 'sum'"):
        QuantSettings(aggregation="sum").check()
    assert QuantSettings("gptq", aggregation="balanced").hessian_aggregation == "mixed"
