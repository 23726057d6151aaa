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
