"""The serving scheduler: plain Python on plain data (no tensors, no model).

Each engine step asks :meth:`Scheduler.schedule` for a :class:`StepPlan` (which requests
prefill which prompt tokens into which KV rows, which rows decode one token, which
requests expired or were cancelled), runs it, and reports back (:meth:`Scheduler.prefilled`,
:meth:`Scheduler.decoded`, :meth:`Scheduler.finish`). Tests drive it with hand-built
outputs.

Policy ``continuous``: requests join between decode steps into free KV rows; candidates
are ordered by predicted remaining work (a :class:`LengthPredictor` estimate of the
output length plus a small cost per prompt token) minus an aging credit per second
waited, so short work goes first and nothing starves; at most ``max_tasks_per_step``
distinct tasks run in one step; prompts of similar length are prefilled together in
contiguous rows; a prompt longer than ``chunk_size`` is prefilled alone, one chunk per
step, so running decodes keep going. A request whose prompt starts with a cached prefix
(``Request.cached`` tokens, see :mod:`tinyllm.runtime.prefixcache`) is prefilled alone
from there: ONNX Runtime's CPU attention continues a prompt after past tokens only for
one row. Policy ``fifo``: static batches in arrival order
(the baseline the serving benchmark compares against).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tinyllm.errors import ConfigError, QueueFullError

Policy = Literal["continuous", "fifo"]


@dataclass(frozen=True)
class SchedulerConfig:
    """Scheduler knobs.

    Args:
        max_rows: KV rows (requests in flight at once).
        queue_size: waiting requests accepted beyond those in flight.
        max_tasks_per_step: β, distinct tasks in one step (continuous policy).
        chunk_size: prompts longer than this are prefilled alone in chunks of this size.
        prefill_tokens: padded prompt tokens prefilled per step (>= chunk_size).
        length_ratio: prompts prefilled together differ in length by at most this factor.
        aging: units of predicted work forgiven per second a request has waited.
        prompt_weight: cost of one prompt token relative to one generated token.
        policy: ``continuous`` or ``fifo``.
    """

    max_rows: int = 8
    queue_size: int = 64
    max_tasks_per_step: int = 4
    chunk_size: int = 256
    prefill_tokens: int = 512
    length_ratio: float = 1.5
    aging: float = 20.0
    prompt_weight: float = 0.05
    policy: Policy = "continuous"

    def __post_init__(self) -> None:
        positive = ("max_rows", "queue_size", "max_tasks_per_step", "chunk_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.prefill_tokens < self.chunk_size:
            raise ConfigError(
                f"prefill_tokens ({self.prefill_tokens}) must be >= chunk_size ({self.chunk_size})"
            )
        if self.length_ratio < 1 or self.aging < 0 or self.prompt_weight < 0:
            raise ConfigError("length_ratio must be >= 1, aging and prompt_weight >= 0")
        if self.policy not in ("continuous", "fifo"):
            raise ConfigError(f"scheduler must be 'continuous' or 'fifo', got {self.policy!r}")


@dataclass
class Request:
    """One request as the scheduler sees it: lengths and times, no text."""

    id: int
    task: str
    prompt_len: int
    max_new_tokens: int
    arrival: float
    deadline: float | None = None
    predicted_out: float = 1.0
    prefilled: int = 0
    generated: int = 0
    row: int | None = None
    cancelled: bool = False
    cached: int = 0

    @property
    def running(self) -> bool:
        """Holds a KV row."""
        return self.row is not None

    @property
    def decoding(self) -> bool:
        """Its whole prompt is in the KV cache (it decodes next)."""
        return self.row is not None and self.prefilled >= self.prompt_len

    def remaining_work(self, prompt_weight: float) -> float:
        """Predicted work left: output tokens still to come plus weighted prompt tokens."""
        out = max(self.predicted_out - self.generated, 1.0)
        return out + prompt_weight * (self.prompt_len - max(self.prefilled, self.cached))


@dataclass(frozen=True)
class PrefillRow:
    """Prompt tokens ``[start, end)`` of one request go into KV row ``row``."""

    request: int
    row: int
    start: int
    end: int


@dataclass(frozen=True)
class StepPlan:
    """What one engine step does. Rows of a prefill group are contiguous, in order.

    ``decode`` lists the requests that take one token from the step's decode run, after
    the prefills: those already decoding and those whose prompt the prefills complete
    (the engine skips one that its first token ended).
    """

    prefill: list[list[PrefillRow]] = field(default_factory=list)
    decode: list[int] = field(default_factory=list)
    expired: list[Request] = field(default_factory=list)
    cancelled: list[Request] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to run."""
        return not (self.prefill or self.decode or self.expired or self.cancelled)


@dataclass
class _Moments:
    n: int = 0
    mean_x: float = 0.0
    mean_y: float = 0.0
    var_x: float = 0.0
    cov_xy: float = 0.0


class LengthPredictor:
    """Per-task output length: EMA of outputs plus a term in input length, updated online.

    The estimate is ``mean_y + b * (x - mean_x)`` with ``b = cov(x, y) / var(x)`` from
    exponentially weighted moments (weight ``decay``; plain means for the first
    ``1 / decay`` observations). Before any observation it is half the output limit.
    """

    def __init__(self, decay: float = 0.1) -> None:
        if not 0 < decay <= 1:
            raise ConfigError(f"decay must be in (0, 1], got {decay}")
        self.decay = decay
        self.tasks: dict[str, _Moments] = {}

    def predict(self, task: str, prompt_len: int, max_new_tokens: int) -> float:
        """Predicted output tokens of a request, in ``[1, max_new_tokens]``."""
        m = self.tasks.get(task)
        if m is None or m.n == 0:
            guess = max_new_tokens / 2
        else:
            slope = m.cov_xy / m.var_x if m.n > 1 and m.var_x > 1e-6 else 0.0
            guess = m.mean_y + slope * (prompt_len - m.mean_x)
        return float(min(max(guess, 1.0), max_new_tokens))

    def observe(self, task: str, prompt_len: int, output_len: int) -> None:
        """Record a finished request's lengths."""
        m = self.tasks.setdefault(task, _Moments())
        m.n += 1
        a = max(self.decay, 1.0 / m.n)
        dx, dy = prompt_len - m.mean_x, output_len - m.mean_y
        m.mean_x += a * dx
        m.mean_y += a * dy
        m.var_x = (1 - a) * (m.var_x + a * dx * dx)
        m.cov_xy = (1 - a) * (m.cov_xy + a * dx * dy)


class Scheduler:
    """Continuous batching over a fixed pool of KV rows, with a bounded waiting queue."""

    def __init__(self, config: SchedulerConfig, predictor: LengthPredictor | None = None):
        self.config = config
        self.predictor = predictor or LengthPredictor()
        self.requests: dict[int, Request] = {}
        self.free_rows = [True] * config.max_rows

    @property
    def waiting(self) -> list[Request]:
        """Requests without a KV row, in arrival order."""
        return [r for r in self.requests.values() if not r.running]

    @property
    def running(self) -> list[Request]:
        """Requests holding a KV row."""
        return [r for r in self.requests.values() if r.running]

    def admit(self, request: Request) -> None:
        """Queue a request (its length is predicted now); a full queue raises at once."""
        waiting = len(self.requests) - sum(not f for f in self.free_rows)
        if waiting >= self.config.queue_size:
            raise QueueFullError(
                f"the request queue is full ({self.config.queue_size} waiting, "
                f"{self.config.max_rows} running); retry later or load the engine with a "
                "larger queue_size"
            )
        if request.id in self.requests:
            raise ConfigError(f"request id {request.id} is already scheduled")
        request.predicted_out = self.predictor.predict(
            request.task, request.prompt_len, request.max_new_tokens
        )
        self.requests[request.id] = request

    def cancel(self, request_id: int) -> None:
        """Mark a request cancelled; the next plan reports it and frees its row."""
        if request_id in self.requests:
            self.requests[request_id].cancelled = True

    def prefilled(self, request_id: int, end: int) -> None:
        """Report that prompt tokens up to ``end`` are in the KV cache."""
        self.requests[request_id].prefilled = end

    def decoded(self, request_id: int) -> None:
        """Report one more generated token."""
        self.requests[request_id].generated += 1

    def finish(self, request_id: int, observe: bool = True) -> Request:
        """Remove a request, free its row, and learn its output length when ``observe``."""
        request = self.requests.pop(request_id)
        if request.row is not None:
            self.free_rows[request.row] = True
        if observe:
            self.predictor.observe(request.task, request.prompt_len, request.generated)
        return request

    def schedule(self, now: float) -> StepPlan:
        """The next step's plan; expired and cancelled requests are removed here."""
        expired, cancelled = [], []
        for r in list(self.requests.values()):
            if r.cancelled:
                cancelled.append(self.finish(r.id, observe=False))
            elif r.deadline is not None and now >= r.deadline:
                expired.append(self.finish(r.id, observe=False))
        plan = self._fifo() if self.config.policy == "fifo" else self._continuous(now)
        # A prompt whose last chunk is prefilled now takes its second token in this step's
        # decode run, so rows whose prefills end in different steps decode in the same
        # runs from then on: left for the next step, such a row would be computed as a
        # placeholder inside the run (it spans the rows between the lowest and highest
        # decoding) and would need a run of its own after the others finish.
        done = [p.request for g in plan.prefill for p in g if p.end >= self._prompt_len(p)]
        return StepPlan(plan.prefill, plan.decode + done, expired, cancelled)

    def _prompt_len(self, row: PrefillRow) -> int:
        return self.requests[row.request].prompt_len

    def priority(self, request: Request, now: float) -> float:
        """Lower runs first: predicted remaining work minus the aging credit."""
        work = request.remaining_work(self.config.prompt_weight)
        return work - self.config.aging * (now - request.arrival)

    def _fifo(self) -> StepPlan:
        running = self.running
        if running:
            return StepPlan(decode=[r.id for r in running if r.decoding])
        batch = self.waiting[: self.config.max_rows]
        rows = []
        for row, r in enumerate(batch):
            self._take(r, row)
            rows.append(PrefillRow(r.id, row, 0, r.prompt_len))
        return StepPlan(prefill=[rows] if rows else [])

    def _continuous(self, now: float) -> StepPlan:
        """Pick tasks (at most β) in priority order among work that can run this step."""
        beta = self.config.max_tasks_per_step
        free = sum(self.free_rows)
        tasks: list[str] = []
        admitted: list[Request] = []
        for r in sorted(self.requests.values(), key=lambda r: (self.priority(r, now), r.id)):
            if not r.running:
                if free == 0:
                    continue
                free -= 1
            if r.task not in tasks:
                if len(tasks) == beta:
                    continue
                tasks.append(r.task)
            if not r.running:
                admitted.append(r)
        budget = self.config.prefill_tokens
        groups = []
        for r in self.running:
            if not r.decoding and r.task in tasks:  # a long prompt's next chunk
                end = min(r.prefilled + self.config.chunk_size, r.prompt_len)
                groups.append([PrefillRow(r.id, r.row or 0, r.prefilled, end)])
                budget -= end - r.prefilled
        cached = self._admit_cached(admitted, budget)
        groups += cached
        budget -= sum(g[0].end - g[0].start for g in cached)
        group = self._new_group([r for r in admitted if not r.cached], budget)
        if group:
            groups.append(group)
        decode = [r.id for r in self.running if r.decoding and r.task in tasks]
        return StepPlan(prefill=groups, decode=decode)

    def _admit_cached(self, admitted: list[Request], budget: int) -> list[list[PrefillRow]]:
        """Admitted requests with a cached prefix, each prefilled alone after it (in
        priority order, while the prefill budget lasts)."""
        groups = []
        for r in admitted:
            end = min(r.prompt_len, r.cached + self.config.chunk_size)
            if r.cached and end - r.cached <= budget:
                self._take(r, self._rows(1))
                r.prefilled = r.cached  # the engine copies the cached KV into the row
                groups.append([PrefillRow(r.id, r.row or 0, r.cached, end)])
                budget -= end - r.cached
        return groups

    def _new_group(self, admitted: list[Request], budget: int) -> list[PrefillRow]:
        """Admitted requests of similar prompt length, prefilled together in free rows."""
        if not admitted:
            return []
        first = admitted[0]
        if first.prompt_len > self.config.chunk_size:
            if budget < self.config.chunk_size:
                return []
            row = self._rows(1)
            self._take(first, row)
            return [PrefillRow(first.id, row, 0, self.config.chunk_size)]
        if first.prompt_len > budget:
            return []
        chosen = [first]
        for r in admitted[1:]:
            lengths = [c.prompt_len for c in chosen] + [r.prompt_len]
            similar = max(lengths) <= self.config.length_ratio * min(lengths)
            if similar and max(lengths) * len(lengths) <= budget:
                chosen.append(r)
        start, size = self._run_of_free_rows(len(chosen))
        chosen = chosen[:size]
        group = []
        for offset, r in enumerate(chosen):
            self._take(r, start + offset)
            group.append(PrefillRow(r.id, start + offset, 0, r.prompt_len))
        return group

    def _take(self, request: Request, row: int) -> None:
        self.free_rows[row] = False
        request.row = row

    def _rows(self, n: int) -> int:
        start, size = self._run_of_free_rows(n)
        if size < n:
            raise ConfigError(f"no {n} contiguous free KV rows")
        return start

    def _run_of_free_rows(self, n: int) -> tuple[int, int]:
        """(start, length) of the lowest run of free rows with length n, else the longest."""
        best = (0, 0)
        row = 0
        while row < len(self.free_rows):
            if not self.free_rows[row]:
                row += 1
                continue
            end = row
            while end < len(self.free_rows) and self.free_rows[end] and end - row < n:
                end += 1
            if end - row >= n:
                return row, n
            if end - row > best[1]:
                best = (row, end - row)
            row = end
        return best
