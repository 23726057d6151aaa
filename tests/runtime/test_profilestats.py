"""The profiler's summaries: the A/B overhead of interleaved rounds, time per loop step."""

from __future__ import annotations

import pytest

from tinyllm.runtime.profilestats import ab_overhead, per_step
from tinyllm.runtime.steprecorder import StepRecord


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


def test_per_step_splits_the_steps_busy_time_at_onnx_runtime() -> None:
    def step(decode_rows: int, **phases: float) -> StepRecord:
        return StepRecord(0.0, 1.0, 0.0, [], [], phases, 0, 1 - decode_rows, decode_rows, [])

    steps = [
        step(0, prefill_ort=0.004, sample=0.001),  # a prefill-only step
        step(1, decode_ort=0.002, sample=0.001, scheduler=0.001),
        step(1, decode_ort=0.002, sample=0.001),
    ]
    r = per_step(steps)
    assert r["steps"] == 3 and r["decode_steps"] == 2
    assert r["ort_ms"] == pytest.approx(8.0 / 3) and r["outside_ort_ms"] == pytest.approx(4.0 / 3)
    assert per_step([]) == {"outside_ort_ms": 0.0, "ort_ms": 0.0, "steps": 0, "decode_steps": 0}
