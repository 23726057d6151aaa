"""The recorder splits a step's laps into phases, and ONNX Runtime runs out of them."""

from __future__ import annotations

from typing import Any

from tinyllm.runtime.scheduler import PrefillRow, StepPlan
from tinyllm.runtime.steprecorder import PhaseRecorder, TimedSession
from tinyllm.runtime.stopwatch import NO_WATCH, Stopwatch


class _Session:
    def run_with_iobinding(self, binding: Any) -> None:
        pass

    def io_binding(self) -> str:
        return "binding"


def _watch(laps: list[tuple[str, float, float]]) -> Stopwatch:
    watch = Stopwatch()
    watch.laps = laps
    watch.start, watch.last = laps[0][1], laps[-1][2]
    return watch


def test_laps_split_into_ort_runs_and_session_inputs() -> None:
    timed = TimedSession(_Session())
    assert timed.io_binding() == "binding"  # everything else reaches the session
    recorder = PhaseRecorder(timed)
    recorder.watch()
    laps = [
        ("scheduler", 0.0, 1.0),
        ("prefill", 1.0, 5.0),
        ("sample", 5.0, 6.0),
        ("decode", 6.0, 9.0),
        ("finish", 9.0, 9.5),
    ]
    timed.runs += [(1.5, 4.5), (6.5, 8.0)]
    plan = StepPlan(prefill=[[PrefillRow(7, 0, 0, 12)]], decode=[3])
    recorder.step(_watch(laps), plan, {0: 7, 1: 3})
    assert recorder.steps == []  # the loop's call only keeps what it is given
    recorder.settle()
    (step,) = recorder.steps
    assert step.phases["prefill_ort"] == 3.0 and step.phases["prefill_inputs"] == 1.0
    assert step.phases["decode_ort"] == 1.5 and step.phases["decode_inputs"] == 1.5
    assert step.phases["scheduler"] == 1.0 and step.phases["sample"] == 1.0
    assert sum(step.phases.values()) == 9.5  # the laps, nothing lost or counted twice
    assert [k for k, _, _ in step.runs] == ["prefill", "decode"]
    assert (step.prefill_tokens, step.prefill_rows, step.decode_rows) == (12, 1, 1)
    assert recorder.active == 0


def test_a_run_outside_the_ort_laps_is_not_counted_as_ort() -> None:
    timed = TimedSession(_Session())
    recorder = PhaseRecorder(timed)
    recorder.watch()
    timed.runs.append((0.2, 0.4))  # inside the scheduler's lap: not a prefill or decode
    recorder.step(_watch([("scheduler", 0.0, 1.0)]), StepPlan(), {})
    recorder.settle()
    assert recorder.steps[0].phases["scheduler"] == 1.0
    assert recorder.steps[0].runs == [] and recorder.totals()["decode_ort"] == 0.0


def test_the_loop_without_a_recorder_keeps_no_laps() -> None:
    NO_WATCH.lap("decode")
    assert not hasattr(NO_WATCH, "laps")
