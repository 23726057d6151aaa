"""The profiler's summaries: the A/B overhead of interleaved rounds."""

from __future__ import annotations

import pytest

from tinyllm.runtime.profilestats import ab_overhead


def test_ab_overhead_is_the_median_and_range_of_per_round_ratios() -> None:
    plain = [1.0, 2.0, 1.0, 4.0]
    recorded = [1.01, 2.1, 0.98, 4.0]  # +1%, +5%, -2%, 0%
    r = ab_overhead(plain, recorded)
    assert r["rounds"] == 4
    assert r["per_round"] == pytest.approx([0.01, 0.05, -0.02, 0.0])
    assert r["overhead"] == pytest.approx(0.005)  # median of the ratios, not of the latencies
    assert r["overhead_min"] == pytest.approx(-0.02) and r["overhead_max"] == pytest.approx(0.05)
    assert r["median_latency_ms_unprofiled"] == pytest.approx(1500.0)
    assert r["median_latency_ms_recorded"] == pytest.approx(1555.0)


@pytest.mark.parametrize(
    ("plain", "recorded", "message"),
    [
        ([], [], "same number"),
        ([1.0, 2.0], [1.0], "same number"),
        ([1.0, 0.0], [1.0, 1.0], "must be > 0"),
    ],
)
def test_ab_overhead_refuses_broken_rounds(
    plain: list[float], recorded: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ab_overhead(plain, recorded)
