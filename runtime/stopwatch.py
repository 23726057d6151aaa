"""Phase timing of the decode loop: the lap clock the loop marks and the recorder it calls.

The loop (:mod:`tinyllm.runtime.serving`) marks the end of each phase of a step with
``watch.lap(name)``; without a recorder the watch is :data:`NO_WATCH`, whose laps do
nothing, so serving pays one no-op call per phase. ``tinyllm profile`` attaches a
recorder (:mod:`tinyllm.runtime.profiling`) that keeps every lap.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tinyllm.runtime.live import Live
    from tinyllm.runtime.scheduler import StepPlan

# The phases the loop marks, in the order a step runs them.
LOOP_PHASES = ("scheduler", "prefix_copy", "prefill", "decode", "sample", "detokenize", "finish")


class Stopwatch:
    """Splits one loop iteration's time into named phases.

    ``lap(name)`` charges the time since the previous lap (or since the watch was made)
    to ``name``; ``laps`` keeps (name, start, end) in ``time.perf_counter`` seconds.
    """

    __slots__ = ("laps", "last", "start")

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: list[tuple[str, float, float]] = []

    def lap(self, name: str) -> None:
        """End the current phase, naming it ``name``."""
        now = time.perf_counter()
        self.laps.append((name, self.last, now))
        self.last = now


class _NoWatch(Stopwatch):
    """A watch that records nothing (the loop without a recorder)."""

    def __init__(self) -> None:  # no clock read, no list
        pass

    def lap(self, name: str) -> None:
        """Nothing: no recorder is attached."""


NO_WATCH = _NoWatch()


class StepRecorder(Protocol):
    """What the decode loop tells a profiler (all calls come from the loop thread)."""

    def watch(self) -> Stopwatch:
        """A fresh watch for one loop iteration, made once there is work (the time since
        the previous iteration's ``step`` is the loop's idle time)."""
        ...

    def step(self, watch: Stopwatch, plan: StepPlan, rows: dict[int, int]) -> None:
        """One iteration ran ``plan``; ``rows`` maps KV rows to the requests holding them."""
        ...

    def ended(self, live: Live, error: Exception | None) -> None:
        """A request left the loop (``error`` None: it completed)."""
        ...
