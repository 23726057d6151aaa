"""What ``tinyllm profile`` records of the decode loop: every step's phases, every ONNX
Runtime run, and every request's timeline.

:class:`PhaseRecorder` is the :class:`~tinyllm.runtime.stopwatch.StepRecorder` the
profiler attaches to an engine (``engine.record(recorder)``); :class:`TimedSession`
wraps the engine's ONNX Runtime session to time each run. A step's wall time splits
into the loop's laps; a ``prefill`` or ``decode`` lap splits again into the time inside
ONNX Runtime's run and the session's own Python (feeds and bindings).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tinyllm.runtime.stopwatch import Stopwatch

if TYPE_CHECKING:
    from tinyllm.runtime.live import Live
    from tinyllm.runtime.scheduler import StepPlan

# Phases of the loop's wall time, in report order (see PhaseRecorder.step).
PHASES = (
    "scheduler",
    "prefix_copy",
    "prefill_ort",
    "prefill_inputs",
    "decode_ort",
    "decode_inputs",
    "sample",
    "detokenize",
    "finish",
)
ORT_PHASES = ("prefill_ort", "decode_ort")
LABELS = {
    "tokenize": "tokenize",
    "prompt_build": "prompt build",
    "queue": "queue wait",
    "scheduler": "scheduler",
    "prefix_copy": "prefix-cache copy",
    "prefill_ort": "prefill: ONNX Runtime run",
    "prefill_inputs": "prefill: session inputs",
    "decode_ort": "decode: ONNX Runtime run",
    "decode_inputs": "decode: session inputs",
    "sample": "sampling + constraints",
    "detokenize": "detokenize",
    "finish": "finish (parse, futures)",
    "profiler": "profiler's own time",
    "idle": "idle (no work)",
}


class TimedSession:
    """An InferenceSession whose runs are timed: ``runs`` holds (start, end) per run."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.runs: list[tuple[float, float]] = []

    def run_with_iobinding(self, binding: Any, *args: Any) -> None:
        """ONNX Runtime's run over an IO binding, timed."""
        start = time.perf_counter()
        self.session.run_with_iobinding(binding, *args)
        self.runs.append((start, time.perf_counter()))

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """ONNX Runtime's run, timed."""
        start = time.perf_counter()
        out = self.session.run(*args, **kwargs)
        self.runs.append((start, time.perf_counter()))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


@dataclass
class StepRecord:
    """One loop iteration: its laps, its ONNX Runtime runs and the work it did."""

    start: float
    end: float
    idle_before: float
    laps: list[tuple[str, float, float]]
    runs: list[tuple[str, float, float]]  # (prefill | decode, start, end)
    phases: dict[str, float]
    prefill_tokens: int
    prefill_rows: int
    decode_rows: int
    requests: list[int]


@dataclass
class RequestRecord:
    """One request's timeline (seconds) and its share of the steps it ran in."""

    id: int
    task: str
    prompt_tokens: int
    output_tokens: int
    start: float
    queue_s: float
    ttft_s: float
    e2e_s: float
    error: str | None
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first (None with fewer than two tokens)."""
        if self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


class PhaseRecorder:
    """Collects steps and requests from the decode loop of one engine.

    The loop's calls only keep what they are given; :meth:`settle` turns it into
    :attr:`steps` and :attr:`requests` once the pass is over, so recording costs the
    loop a few list appends per step.

    Args:
        session: the engine's timed session (its runs are matched to steps).
    """

    def __init__(self, session: TimedSession) -> None:
        self.session = session
        self.steps: list[StepRecord] = []
        self.requests: list[RequestRecord] = []
        self.profiler_s = 0.0
        self.active = 0  # loop iterations begun and not yet recorded
        self._seen = len(session.runs)
        self._last_end = time.perf_counter()
        self._raw: list[tuple[Stopwatch, StepPlan, list[tuple[float, float]], float]] = []
        self._ended: list[tuple[RequestRecord, float]] = []

    def watch(self) -> Stopwatch:
        """A fresh watch for one loop iteration."""
        self.active += 1
        return Stopwatch()

    def step(self, watch: Stopwatch, plan: StepPlan, rows: dict[int, int]) -> None:
        """Keep one iteration (called by the loop thread after the step)."""
        runs = self.session.runs[self._seen :]
        self._seen += len(runs)
        self._raw.append((watch, plan, runs, self._last_end))
        self._last_end = time.perf_counter()
        self.profiler_s += self._last_end - watch.last
        self.active -= 1

    def ended(self, live: Live, error: Exception | None) -> None:
        """Keep a request that left the loop."""
        now = time.perf_counter()
        route = live.route
        client = route.build_s + route.tokenize_s  # before the request reached the loop
        start = live.start - client
        record = RequestRecord(
            live.id,
            route.task.name if route.task else "<completion>",
            len(route.prompt),
            len(live.tokens),
            start,
            0.0,
            live.ttft + client if error is None else 0.0,
            now - start,
            None if error is None else f"{type(error).__name__}: {error}",
            {"tokenize": route.tokenize_s, "prompt_build": route.build_s},
        )
        self._ended.append((record, live.start))

    def settle(self, timeout_s: float = 10.0) -> None:
        """Wait for the loop's iteration in progress to be kept (its requests may end
        before the step that ended them is), then build the steps and requests."""
        deadline = time.perf_counter() + timeout_s
        while self.active > 0 and time.perf_counter() < deadline:
            time.sleep(0.001)
        first: dict[int, float] = {}
        shares: dict[int, dict[str, float]] = {}
        raw, self._raw = self._raw, []
        for watch, plan, runs, previous_end in raw:
            step = _step_record(watch, plan, runs, previous_end)
            self.steps.append(step)
            ids = set(step.requests)
            for rid in ids:  # each request's share of the step
                first.setdefault(rid, step.start)
                share = shares.setdefault(rid, dict.fromkeys(PHASES, 0.0))
                for name, seconds in step.phases.items():
                    share[name] += seconds / len(ids)
        ended, self._ended = self._ended, []
        for record, submitted in ended:
            record.queue_s = max(first.get(record.id, submitted) - submitted, 0.0)
            record.phases.update(shares.get(record.id, dict.fromkeys(PHASES, 0.0)))
            record.phases["queue"] = record.queue_s
            self.requests.append(record)

    def totals(self) -> dict[str, float]:
        """Seconds per loop phase over every step, plus ``idle`` and ``profiler``."""
        totals = dict.fromkeys(PHASES, 0.0)
        for s in self.steps:
            for name, seconds in s.phases.items():
                totals[name] += seconds
        totals["idle"] = sum(s.idle_before for s in self.steps)
        totals["profiler"] = self.profiler_s
        return totals


def _step_record(
    watch: Stopwatch, plan: StepPlan, runs: list[tuple[float, float]], previous_end: float
) -> StepRecord:
    """One iteration's phases: its laps, with ``prefill`` and ``decode`` laps split into
    the ONNX Runtime runs that started inside them and the session's own time."""
    phases = dict.fromkeys(PHASES, 0.0)
    kinds = []
    for name, a, b in watch.laps:
        inside = [(s, e) for s, e in runs if a <= s < b]
        if name in ("prefill", "decode"):
            ort = sum(e - s for s, e in inside)
            phases[f"{name}_ort"] += ort
            phases[f"{name}_inputs"] += (b - a) - ort
            kinds += [(name, s, e) for s, e in inside]
        else:
            phases[name] += b - a
    prefill = [p for group in plan.prefill for p in group]
    return StepRecord(
        watch.start,
        watch.last,
        max(watch.start - previous_end, 0.0),
        list(watch.laps),
        kinds,
        phases,
        sum(p.end - p.start for p in prefill),
        len(prefill),
        len(plan.decode),
        [p.request for p in prefill] + list(plan.decode),
    )
